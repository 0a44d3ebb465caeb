"""Models trained on the user's own images (data=folder, csv, hf) in use: predict, serve and export name their
classes as written (unicode, spaces) and feed them whole images resized as in training, never MNIST's digit
pipeline; the drawing page is for digit models only."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from helpers import needs
from helpers.data import write_checkpoint
from helpers.inprocess import run_command
from PIL import Image

from mnistlab.data.decode import square
from mnistlab.serving.inference import Predictor, load_inference_model
from mnistlab.serving.preprocess import open_image, prepare, resize_crop, resolve_style

CLASSES = ["café au lait", "leaf b", "ночь 夜"]


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def halves(size: tuple[int, int] = (60, 40)) -> Image.Image:
    """Left half red, right half blue: where each lands tells rotation and crop apart."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2, 0] = 220
    pixels[:, size[0] // 2 :, 2] = 220
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def colour_ckpt(tmp_path_factory):
    """A 3×32×32 model of a folder of images whose class names have accents, spaces and non-Latin letters."""
    return write_checkpoint(
        tmp_path_factory.mktemp("own") / "best.ckpt",
        input_shape=(3, 32, 32),
        classes=CLASSES,
        data={"dataset": "folder", "root": "/pictures", "image_size": 32, "channels": 3},
    )


@pytest.fixture(scope="module")
def gray_ckpt(tmp_path_factory):
    return write_checkpoint(
        tmp_path_factory.mktemp("own") / "gray.ckpt",
        input_shape=(1, 32, 32),
        classes=CLASSES,
        data={"dataset": "csv", "csv": "/pictures/labels.csv", "image_size": 32, "channels": 1},
    )


def test_auto_preprocessing_is_mnists_for_mnist_only():
    for dataset in ("folder", "csv", "hf"):
        assert resolve_style("auto", dataset, (1, 32, 32)) == "resize"  # gray own images too
        assert resolve_style("auto", dataset, (1, 28, 28)) == "resize"
        assert resolve_style("auto", dataset, (3, 64, 64)) == "resize"
    assert resolve_style("auto", "mnist", (1, 28, 28)) == "mnist"
    assert resolve_style("auto", None, (1, 28, 28)) == "mnist"  # a checkpoint that names no data set
    assert resolve_style("auto", "fashion_mnist", (1, 28, 28)) == "fit"
    assert resolve_style("auto", "mnist_detection", (1, 128, 128)) == "fit"  # canvases of MNIST digits
    assert resolve_style("auto", "cifar10", (3, 32, 32)) == "resize"
    assert resolve_style("mnist", "folder", (1, 32, 32)) == "mnist"  # asked for, given


def test_served_pixels_are_the_training_pixels_in_every_mode():
    """What prepare gives is what the training decoder (mnistlab.data.decode.square) put in the cache, for
    1 and 3 channels and every mode a user's files come in."""
    rgb = halves()
    pixels = np.asarray(rgb)
    alpha = np.full(pixels.shape[:2], 200, np.uint8)
    sixteen = Image.fromarray(pixels[:, :, 0].astype(np.uint16) * 257)  # 16-bit gray
    images = {
        "RGB": rgb,
        "L": rgb.convert("L"),
        "RGBA": Image.fromarray(np.dstack([pixels, alpha])),
        "LA": rgb.convert("LA"),
        "P": rgb.convert("P"),
        "P+transparency": Image.open(io.BytesIO(encoded(rgb.convert("P"), transparency=0))),
        "I;16": sixteen,
        "I": sixteen.convert("I"),
        "F": Image.fromarray(pixels[:, :, 0].astype(np.float32) / 255),
        "1": rgb.convert("1"),
        "CMYK": rgb.convert("CMYK"),
    }
    for name, image in images.items():
        for channels in (1, 3):
            array = prepare(image, (channels, 32, 32), "resize")
            assert array.shape == (channels, 32, 32) and array.dtype == np.float32, name
            assert array.min() >= 0 and array.max() <= 1, name
            np.testing.assert_array_equal(array, square(image, 32, channels) / np.float32(255), err_msg=name)
    # 16-bit, 32-bit and float gray keep their brightness (PIL's own convert clips them white)
    red = prepare(rgb, (1, 32, 32), "resize")
    for name in ("I;16", "I", "F"):
        gray = prepare(images[name], (1, 32, 32), "resize")
        assert abs(float(gray[0, 16, 4]) - 220 / 255) < 0.01, name
        assert float(gray[0, 16, 28]) < 0.01, name
    assert red[0, 16, 4] > red[0, 16, 28]  # luminance of red over blue
    # the colour model sees red on the left, blue on the right, cropped to the middle square
    colour = prepare(rgb, (3, 32, 32), "resize")
    assert colour[0, :, :10].mean() > 0.8 and colour[2, :, :10].mean() < 0.05
    assert colour[2, :, -10:].mean() > 0.8 and colour[0, :, -10:].mean() < 0.05


def test_an_exif_rotated_photo_is_turned_upright():
    """A phone stores a portrait photo sideways plus EXIF orientation 6 (turn 90° clockwise to view)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = halves((60, 40))  # red left, blue right as stored; upright: red on top
    image = open_image(encoded(stored, "JPEG", quality=95, exif=exif))
    assert image.size == (40, 60)
    array = resize_crop(image, 3, 32, 32)
    assert array[0, :8].mean() > 0.75 and array[2, :8].mean() < 0.1  # red on top
    assert array[2, -8:].mean() > 0.75 and array[0, -8:].mean() < 0.1  # blue at the bottom


def test_predict_names_the_classes_as_written(colour_ckpt, tmp_path, capsys, monkeypatch):
    _, card = load_inference_model(str(colour_ckpt))
    assert card.classes == CLASSES and card.input_shape == (3, 32, 32) and card.preprocess == "resize"
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a photo.jpg").write_bytes(encoded(halves((300, 200)), "JPEG"))
    (photos / "b.png").write_bytes(encoded(halves((20, 50)).convert("RGBA")))
    monkeypatch.chdir(tmp_path)

    run_command("predict", [f"ckpt_path={colour_ckpt}", f"inputs={photos}", "output=json"])
    out = capsys.readouterr().out
    for name in CLASSES:
        assert f'"{name}"' in out  # as written in the JSON, not as \u escapes
    results = json.loads(out)
    assert [r["file"].rsplit("/", 1)[-1] for r in results] == ["a photo.jpg", "b.png"]
    expected = Predictor(str(colour_ckpt)).predict([open_image(photos / "a photo.jpg")])[0]
    assert results[0]["label"] == expected.label in CLASSES
    assert set(results[0]["probabilities"]) == set(CLASSES)
    assert sum(results[0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)

    run_command("predict", [f"ckpt_path={colour_ckpt}", f"inputs={photos / 'a photo.jpg'}"])
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{photos / 'a photo.jpg'}  {expected.label}  (")
    assert all(f"{name}: " in line for name in CLASSES)  # top-3 of 3 classes: every name

    # a console that cannot write the names gets them escaped, not a traceback
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    run_command("predict", [f"ckpt_path={colour_ckpt}", f"inputs={photos / 'a photo.jpg'}"])
    ascii_out.flush()
    assert "caf\\xe9 au lait: " in ascii_out.buffer.getvalue().decode("ascii")  # type: ignore[attr-defined]


@needs("fastapi", "multipart", "fastapi_offline")
def test_serve_answers_with_the_class_names_and_an_upload_page(colour_ckpt, gray_ckpt, tmp_path):
    from fastapi.testclient import TestClient

    from mnistlab import api
    from mnistlab.serving.server import build_app

    def served(ckpt) -> TestClient:  # the app mnistlab-serve runs, from the same config
        return TestClient(api._hydra("serve", build_app, [f"ckpt_path={ckpt}"]).return_value)

    for ckpt, channels in ((colour_ckpt, 3), (gray_ckpt, 1)):
        client = served(ckpt)
        health = client.get("/health").json()
        assert health["classes"] == CLASSES and health["preprocess"] == "resize"
        assert health["input_shape"] == [channels, 32, 32]
        response = client.post("/api/v1/predict", files={"file": ("p.jpg", encoded(halves(), "JPEG"), "image/jpeg")})
        assert response.status_code == 200, response.text
        assert all(name in response.content.decode("utf-8") for name in CLASSES)  # UTF-8, not escapes
        body = response.json()
        assert body["label"] in CLASSES and {g["label"] for g in body["top3"]} == set(CLASSES)
        seen = np.asarray(body["input"])
        assert seen.shape == ((32, 32, 3) if channels == 3 else (32, 32))  # resized whole, not a 28×28 digit
        page = client.get("/").text
        assert 'id="file"' in page and 'id="canvas"' not in page and "Drawing is for digit models only" in page
    digits = served(write_checkpoint(tmp_path / "digits.ckpt"))
    assert 'id="canvas"' in digits.get("/").text  # a digit model keeps its drawing page


@needs("onnx", "onnxscript", "onnxruntime")
def test_export_carries_the_classes_and_preprocessing(colour_ckpt, tmp_path, capsys):
    import onnx

    target = tmp_path / "own.onnx"
    run_command("export", [f"ckpt_path={colour_ckpt}", f"output={target}"])
    metadata = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    card = json.loads(metadata["mnistlab"])
    assert card["classes"] == CLASSES and card["preprocess"] == "resize" and card["input_shape"] == [3, 32, 32]
    assert "café au lait" in metadata["mnistlab"]  # readable in any ONNX viewer
    onnx_predictor = Predictor(backend="onnx", onnx_path=str(target))
    torch_predictor = Predictor(str(colour_ckpt))
    assert onnx_predictor.card == torch_predictor.card
    image = open_image(encoded(halves(), "PNG"))
    (a,), (b,) = onnx_predictor.predict([image]), torch_predictor.predict([image])
    assert a.label == b.label and a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def write_own_images(root, per_class: int = 70) -> None:
    """Three classes told apart by their dominant colour, in JPEG and PNG of a few sizes around 32 px."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("rouge vif", "vert", "bleu")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            width, height = 28 + 4 * (i % 3), 28 + 4 * (i % 4)
            pixels = rng.integers(0, 90, size=(height, width, 3), dtype=np.uint8)
            pixels[:, :, label] += 150
            fmt, suffix = ("JPEG", "jpg") if i % 2 else ("PNG", "png")
            Image.fromarray(pixels).save(root / name / f"{i:03d}.{suffix}", fmt)


@needs("fastapi", "multipart", "fastapi_offline")
def test_train_evaluate_predict_and_serve_own_images(tmp_path):
    """The whole path a user takes, on 210 small images: train on a folder, then evaluate, predict, serve."""
    from fastapi.testclient import TestClient

    from mnistlab import api
    from mnistlab.serving.server import build_app

    pictures, run, data_dir = tmp_path / "pictures", tmp_path / "run", tmp_path / "data"
    write_own_images(pictures)
    # what mnistlab-train runs (the same Hydra composition), in this process: the command's own process is
    # tested once per command in tests/test_catalogue.py, and a fresh interpreter would triple this test's time
    metrics = api.train(
        [
            "data=folder",
            f"data.root={pictures}",
            "trainer.max_epochs=1",
            "data.batch_size=16",
            "callbacks.progress_bar=null",
            "trainer.enable_model_summary=false",
            "logger=csv",
            f"paths.data_dir={data_dir}",
            f"hydra.run.dir={run}",
        ]
    )
    assert metrics["sanity/batch_shape"] == [16, 3, 32, 32]  # inferred: the median side, colour images
    assert len(list((data_dir / "image_cache").glob("*/images.npy"))) == 1  # decoded once, kept for the next run
    ckpt = run / "checkpoints" / "best.ckpt"
    assert metrics["test/acc"] > 0.6  # colour is easy: one epoch is enough to be far above chance (1/3)

    evaluation = api.evaluate([f"ckpt_path={ckpt}", f"paths.data_dir={data_dir}", f"hydra.run.dir={tmp_path / 'eval'}"])
    assert evaluation["test/acc"] == pytest.approx(metrics["test/acc"])  # the same test split, found again

    results = api.predict([f"ckpt_path={ckpt}", f"inputs={pictures / 'vert'}", "output=json"])
    assert len(results) == 70 and set(results[0]["probabilities"]) == {"bleu", "rouge vif", "vert"}
    assert sum(r["label"] == "vert" for r in results) > 0.6 * len(results)

    client = TestClient(api._hydra("serve", build_app, [f"ckpt_path={ckpt}"]).return_value)
    assert client.get("/health").json()["preprocess"] == "resize"
    body = client.post(
        "/api/v1/predict", files={"file": ("x.png", (pictures / "rouge vif" / "000.png").read_bytes(), "image/png")}
    ).json()
    assert body["label"] == "rouge vif"


@needs("fastapi", "multipart", "fastapi_offline", "playwright")
def test_the_upload_page_in_a_browser(colour_ckpt, tmp_path):
    """Choose a file on the page of a non-digit model: the page shows the class the API named, as written, and
    the 32×32 colour image the model saw."""
    from helpers.browser import CHROMIUM, FLAGS
    from helpers.cli import serving

    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: install Debian's `chromium` package (.ci/run does)")
    from playwright.sync_api import sync_playwright

    photo = tmp_path / "a photo.png"
    photo.write_bytes(encoded(halves()))
    with serving(colour_ckpt) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_function("document.getElementById('classes').textContent.length > 0")
            assert CLASSES[2] in page.inner_text("#classes") and page.locator("#canvas").count() == 0
            with page.expect_response("**/api/v1/predict") as answer:
                page.set_input_files("#file", str(photo))
            body = answer.value.json()
            page.wait_for_selector("body[data-state=done]", timeout=10_000)
            assert page.inner_text("#label") == body["label"] and body["label"] in CLASSES
            entries = page.locator("#top3 .entry").all_inner_texts()
            assert entries == [f"{t['label']}: {100 * t['probability']:.1f} %" for t in body["top3"]]
            red = page.evaluate(  # the preview's left column: red, as the photo's left half
                """() => Array.from(document.getElementById('preview').getContext('2d')
                        .getImageData(0, 0, 32, 32).data.slice(0, 4))"""
            )
            assert page.inner_text("#seen") == "What the model saw (32×32)"
            assert red[0] > 200 and red[2] < 30
        finally:
            browser.close()
