"""Using a trained model: the HTTP API (every good and bad input), predict CLI, export to ONNX/TorchScript."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")

import torch
from fastapi.testclient import TestClient
from helpers.cli import run_cli
from helpers.data import write_checkpoint
from helpers.images import png_bytes, png_claiming, seven
from helpers.inprocess import run_command
from PIL import Image

from mnistlab.serving.http_app import MB, create_app
from mnistlab.serving.inference import Predictor, load_inference_model
from mnistlab.serving.preprocess import open_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.ckpt")


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor(str(checkpoint))


@pytest.fixture(scope="module")
def client(predictor):
    return TestClient(create_app(predictor, max_upload_bytes=1 * MB))


def post(client: TestClient, data: bytes, name: str = "digit.png", field: str = "file"):
    return client.post("/api/v1/predict", files={field: (name, data, "application/octet-stream")})


def test_openapi_documents_every_answer_and_docs_need_no_network(client):
    responses = client.get("/openapi.json").json()["paths"]["/api/v1/predict"]["post"]["responses"]
    assert {"200", "400", "413"} <= set(responses)
    ok = responses["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Prediction"}
    for status in ("400", "413"):
        assert responses[status]["content"]["application/json"]["example"]["detail"]
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert "/docs-assets/redoc.standalone.js" in client.get("/redoc").text
    asset = client.get("/docs-assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_health_and_page(client):
    health = client.get("/health").json()
    assert health == {
        "status": "ok",
        "backend": "torch",
        "classes": [str(i) for i in range(10)],
        "input_shape": [1, 28, 28],
        "preprocess": "mnist",
    }
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in ('id="canvas"', 'id="clear"', 'id="preview"', 'id="top3"', "api/v1/predict"):
        assert element in page.text


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF", "WEBP"])
def test_predict_returns_label_probabilities_and_the_input_the_model_saw(client, predictor, fmt):
    data = png_bytes(seven(), fmt)
    response = post(client, data, f"digit.{fmt.lower()}")
    assert response.status_code == 200, response.text
    body = response.json()
    probabilities = body["probabilities"]
    assert list(probabilities) == [str(i) for i in range(10)]
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-4)
    assert body["label"] == max(probabilities, key=probabilities.get) == str(body["index"])
    assert [t["label"] for t in body["top3"]] == sorted(probabilities, key=probabilities.get, reverse=True)[:3]
    image = np.array(body["input"])
    assert image.shape == (28, 28) and image.min() == 0 and image.max() == pytest.approx(1, abs=0.02)
    # the same answer as predicting in-process: one preprocessing, one model
    (expected,) = predictor.predict([open_image(data)])
    assert body["label"] == expected.label
    np.testing.assert_allclose(image, expected.input[0], atol=1e-3)


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 400, "the upload is empty"),
        (b"%PDF-1.4 not an image", 400, "not a readable image"),
        (png_bytes(seven())[:300], 400, "not a readable image"),
        (png_claiming(60_000, 60_000), 413, "too large to decode"),
        (png_claiming(5000, 5000), 413, "5000×5000 pixels"),
        (png_bytes(Image.new("RGB", (100, 100), "white")), 400, "blank"),
    ],
    ids=["empty", "not-an-image", "corrupt", "bomb", "absurd-dimensions", "blank"],
)
def test_bad_uploads_get_a_json_error_never_a_500(client, data, status, message):
    response = post(client, data)
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_uploads_over_the_size_limit_get_413(client):
    big = b"\0" * (1 * MB + 1)
    response = post(client, big)
    assert response.status_code == 413 and "larger than 1 MB" in response.json()["detail"]
    # a chunked body (no Content-Length) is counted as it arrives
    boundary = b"xyz"
    head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'

    def chunks():
        yield head
        for _ in range(20):
            yield b"\0" * (128 * 1024)
        yield b"\r\n--xyz--\r\n"

    response = client.post(
        "/api/v1/predict",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary.decode()}"},
    )
    assert response.status_code == 413
    assert post(client, png_bytes(seven())).status_code == 200  # the server is fine afterwards


def test_requests_without_the_file_field_get_400(client):
    assert post(client, png_bytes(seven()), field="image").status_code == 400
    response = client.post("/api/v1/predict", content=b"raw bytes", headers={"content-type": "image/png"})
    assert response.status_code == 400 and "multipart form field 'file'" in response.json()["detail"]


def test_permuted_pixel_checkpoints_apply_their_permutation(tmp_path):
    """A model trained with data.permute_pixels=true sees new images through the same permutation."""
    from mnistlab.data.permutation import permutation_order, permute

    ckpt = write_checkpoint(tmp_path / "perm.ckpt", data={"permute_pixels": True, "permutation_seed": 3})
    model, card = load_inference_model(str(ckpt))
    assert card.permutation_seed == 3
    images = torch.rand(4, 1, 28, 28)
    classifier = torch.load(ckpt, weights_only=True)
    from mnistlab.tasks.classification import ClassificationTask

    reference = ClassificationTask(**classifier["hyper_parameters"])
    reference.load_state_dict(classifier["state_dict"])
    with torch.inference_mode():
        expected = reference.eval()(permute(images, permutation_order(28 * 28, 3))).softmax(1)
        torch.testing.assert_close(model(images), expected)


def test_export_onnx_and_torchscript_agree_with_the_checkpoint(checkpoint, predictor, tmp_path, monkeypatch, capsys):
    """mnistlab-export in this process (the command's own process: tests/test_catalogue.py)."""
    pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
    monkeypatch.chdir(tmp_path)
    run_command("export", [f"ckpt_path={checkpoint}", f"output={tmp_path / 'model.onnx'}"])
    assert "max |Δp| vs the checkpoint on 8 images" in capsys.readouterr().out
    run_command("export", [f"ckpt_path={checkpoint}", "format=torchscript"])
    scripted = checkpoint.with_name("best.torchscript.pt")
    assert scripted.is_file() and not list(tmp_path.glob(".*tmp"))
    onnx_predictor = Predictor(backend="onnx", onnx_path=str(tmp_path / "model.onnx"))
    assert onnx_predictor.card == predictor.card
    batch = np.random.default_rng(0).random((16, 1, 28, 28), dtype=np.float32)
    np.testing.assert_allclose(onnx_predictor.backend(batch), predictor.backend(batch), atol=1e-5)
    with torch.inference_mode():
        np.testing.assert_allclose(
            torch.jit.load(str(scripted))(torch.from_numpy(batch)).numpy(), predictor.backend(batch), atol=1e-6
        )
    # serve backend=onnx answers like the torch backend
    onnx_client = TestClient(create_app(onnx_predictor, backend="onnx"))
    torch_client = TestClient(create_app(predictor))
    data = png_bytes(seven())
    onnx_body, torch_body = post(onnx_client, data).json(), post(torch_client, data).json()
    assert onnx_body["label"] == torch_body["label"]
    assert onnx_body["probabilities"] == pytest.approx(torch_body["probabilities"], abs=1e-5)
    assert onnx_client.get("/health").json()["backend"] == "onnx"


def test_export_errors_are_one_line(checkpoint, command_error, tmp_path):
    """In this process (the exit status and stderr of the real commands: tests/test_catalogue.py)."""
    assert command_error("export", f"ckpt_path={checkpoint}", "format=tflite") == (
        "format='tflite' is not one of onnx, torchscript"
    )
    message = command_error("serve", "backend=onnx", f"onnx_path={tmp_path / 'no.onnx'}")
    assert "no.onnx does not exist: write it with `python -m mnistlab.export" in message
    assert command_error("serve").startswith("ckpt_path is required")


def test_predict_cli_text_and_json(checkpoint, predictor, tmp_path, command_error):
    digits = tmp_path / "digits"
    (digits / "more").mkdir(parents=True)
    (digits / "a.png").write_bytes(png_bytes(seven()))
    (digits / "more" / "b.jpg").write_bytes(png_bytes(seven(ink=255, paper=0), "JPEG"))
    (digits / "c.bmp").write_bytes(png_bytes(seven(offset=(10, 30)), "BMP"))
    (digits / "broken.png").write_bytes(b"\x89PNG broken")
    single = tmp_path / "single.png"
    single.write_bytes(png_bytes(seven()))

    result = run_cli(
        "mnistlab.predict", f"ckpt_path={checkpoint}", f"inputs=[{digits},{single}]", "output=json", check=False
    )
    assert result.returncode == 1  # one file could not be read; the others are still predicted
    results = json.loads(result.stdout)
    assert [r["file"].split("/")[-1] for r in results] == ["a.png", "broken.png", "c.bmp", "b.jpg", "single.png"]
    assert "not a readable image" in results[1]["error"]
    expected = predictor.predict([open_image(png_bytes(seven()))])[0]
    assert results[0]["label"] == results[4]["label"] == expected.label
    assert results[0]["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    assert len(results[2]["top3"]) == 3 and "input" not in results[2]

    text = run_cli("mnistlab.predict", f"ckpt_path={checkpoint}", f"inputs={single}", cwd=tmp_path)
    top = ", ".join(f"{label}: {p:.3f}" for label, p in expected.top(3))
    assert text.stdout.strip() == f"{single}  {expected.label}  ({top})"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits", "single.png"]  # nothing written to disk

    assert "nowhere/ does not exist" in command_error("predict", f"ckpt_path={checkpoint}", "inputs=[nowhere/]")


def test_a_drawing_in_an_rgba_png_is_read_like_the_canvas_sends_it(client):
    """The page posts canvas.toBlob(): RGBA, opaque white paper, black ink."""
    rgba = seven().convert("RGBA")
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    grey = post(client, png_bytes(seven())).json()
    assert post(client, buffer.getvalue()).json()["input"] == grey["input"]


def test_no_image_mode_or_mangled_file_gives_a_500(client):
    """Every mode PIL can save, in every format that takes it, and 100 randomly mangled PNGs: 200, 400 or 413."""
    drawing = seven(size=(60, 40), offset=(10, 5))
    statuses = set()
    for mode in ("1", "L", "P", "RGB", "RGBA", "CMYK", "I", "F", "LA", "I;16", "LAB", "YCbCr", "PA", "RGBX"):
        image = drawing.convert(mode) if mode != "LAB" else drawing.convert("RGB").convert("LAB")
        for fmt in ("PNG", "TIFF", "BMP", "JPEG", "GIF", "WEBP"):
            try:
                data = png_bytes(image, fmt)
            except (OSError, ValueError, KeyError):
                continue  # the format cannot hold the mode
            response = post(client, data)
            assert response.status_code in (200, 400), (mode, fmt, response.text)
            statuses.add(response.status_code)
    assert 200 in statuses
    rng = np.random.default_rng(0)
    original = png_bytes(seven())
    for _ in range(100):
        mangled = bytearray(original)
        for position in rng.integers(8, len(mangled), size=5):
            mangled[position] = int(rng.integers(0, 256))
        assert post(client, bytes(mangled)).status_code in (200, 400, 413)


# -- cards checked against the model ---------------------------------------------------------------------
def misfit_checkpoint(path, change: str):
    """A checkpoint whose card (classes, input shape) or weights do not fit its network."""
    write_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    hparams, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
    weight = next(k for k in state if k.startswith("net.") and k.endswith("weight"))
    if change == "three classes":
        hparams["classes"] = ["a", "b", "c"]
    elif change == "duplicate classes":
        hparams["classes"] = ["x"] * 10
    elif change == "huge input":
        hparams["input_shape"] = [1, 60000, 60000]
    elif change == "integer weights":
        state[weight] = (state[weight] * 100).long()
    torch.save(checkpoint, path)
    return path


MISFITS = {
    "three classes": "has a card that does not fit its model: classes has 3 names for the model's 10 outputs",
    "duplicate classes": "classes names 'x' more than once",
    "huge input": "input_shape=[1, 60000, 60000] is not (C, H, W) with C <= 4 and sides <= 4096",
    "integer weights": "as torch.int64; weights must be float32 (or float16, bfloat16, float64)",
}


@pytest.mark.parametrize("command", ["predict", "serve", "evaluate", "export"])
@pytest.mark.parametrize("change", MISFITS)
def test_a_card_that_does_not_fit_its_model_is_one_line(command, change, command_error, tmp_path):
    ckpt = misfit_checkpoint(tmp_path / "misfit.ckpt", change)
    (tmp_path / "digit.png").write_bytes(png_bytes(seven()))
    args = {"predict": [f"inputs={tmp_path / 'digit.png'}"], "serve": ["port=0"]}.get(command, [])
    message = command_error(command, f"ckpt_path={ckpt}", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert message.startswith(f"ckpt_path={ckpt} ") and MISFITS[change] in message, message
    assert [p.name for p in tmp_path.glob("misfit*")] == ["misfit.ckpt"]  # no export written beside it


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_and_double_weights_load_as_float32(dtype, checkpoint, predictor, tmp_path):
    """Runs trained with trainer.precision=16-true or bf16-true save half-precision weights: they load."""
    saved = torch.load(checkpoint, weights_only=True)
    state = saved["state_dict"]
    for key, value in state.items():
        if value.is_floating_point():
            state[key] = value.to(dtype)
    torch.save(saved, tmp_path / "cast.ckpt")
    batch = np.random.default_rng(0).random((4, 1, 28, 28), dtype=np.float32)
    cast = Predictor(str(tmp_path / "cast.ckpt"))
    assert next(cast.backend.model.parameters()).dtype == torch.float32
    atol = 1e-6 if dtype == torch.float64 else 3e-2
    np.testing.assert_allclose(cast.backend(batch), predictor.backend(batch), atol=atol)


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
    output = tmp_path_factory.mktemp("onnx") / "model.onnx"
    run_command("export", [f"ckpt_path={checkpoint}", f"output={output}"])
    return output


ONNX_MISFITS = {
    "three classes": ({"classes": ["a", "b", "c"]}, "classes has 3 names for the model's 10 outputs"),
    "duplicate classes": ({"classes": ["x"] * 10}, "classes names 'x' more than once"),
    "another input": ({"input_shape": [1, 32, 32]}, "input_shape=[1, 32, 32] is not the graph's input [1, 28, 28]"),
    "huge input": ({"input_shape": [1, 60000, 60000]}, "input_shape=[1, 60000, 60000] is not (C, H, W)"),
}


@pytest.mark.parametrize("change", ONNX_MISFITS)
def test_onnx_metadata_that_does_not_fit_the_graph_is_one_line(change, onnx_file, command_error, tmp_path):
    import onnx

    proto = onnx.load(str(onnx_file))
    (entry,) = [p for p in proto.metadata_props if p.key == "mnistlab"]
    update, expected = ONNX_MISFITS[change]
    entry.value = json.dumps({**json.loads(entry.value), **update})
    onnx.save(proto, str(tmp_path / "misfit.onnx"))
    (tmp_path / "digit.png").write_bytes(png_bytes(seven()))
    for command, args in (("predict", [f"inputs={tmp_path / 'digit.png'}"]), ("serve", ["port=0"])):
        message = command_error(command, "backend=onnx", f"onnx_path={tmp_path / 'misfit.onnx'}", *args)
        assert message.startswith(f"onnx_path={tmp_path / 'misfit.onnx'} has a card that does not fit its model: ")
        assert expected in message, message


# -- a server that slow or greedy clients cannot starve ---------------------------------------------------
def _connect(port: int, source: str):
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))


def _closings(sockets: list, seconds: float) -> dict[int, tuple[float, bytes]]:
    """When (seconds from now) the server closed each socket, and what it sent first."""
    import selectors
    import time

    start, ends = time.monotonic(), {}
    received = {i: b"" for i in range(len(sockets))}
    with selectors.DefaultSelector() as selector:
        for i, sock in enumerate(sockets):
            selector.register(sock, selectors.EVENT_READ, i)
        while len(ends) < len(sockets) and time.monotonic() - start < seconds:
            for key, _ in selector.select(timeout=0.05):
                chunk = key.fileobj.recv(4096)
                received[key.data] += chunk
                if not chunk:
                    ends[key.data] = (time.monotonic() - start, received[key.data])
                    selector.unregister(key.fileobj)
    return ends


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="binds 127.0.0.2… as sources")
def test_idle_slow_and_greedy_clients_are_closed_and_health_still_answers(checkpoint):
    """64 idle connections from one address (8 kept, 56 refused), half a request line, a body that stops:
    /health answers from another address within a second, each slow one is closed after its deadline."""
    import time

    import httpx
    from helpers.cli import serving

    deadlines = ["idle_timeout_s=1.5", "header_timeout_s=1", "body_timeout_s=1", "access_log=false"]
    with serving(checkpoint, *deadlines) as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        time.sleep(0.5)  # the server counts down the start-up probe's connection from 127.0.0.1
        idle = [_connect(port, "127.0.0.1") for _ in range(64)]
        half = _connect(port, "127.0.0.2")
        half.sendall(b"GET /hea")
        body = _connect(port, "127.0.0.3")
        body.sendall(b"POST /api/v1/predict HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n" + b"x" * 10)
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.4"), timeout=5) as client:
            start = time.monotonic()
            assert client.get(url + "health").status_code == 200
            assert time.monotonic() - start < 1.0
        closed = _closings([*idle, half, body], seconds=4)
        assert len(closed) == 66, f"{66 - len(closed)} connections still open after 4 s"
        refused = [i for i in range(64) if closed[i][1].startswith(b"HTTP/1.1 503")]
        kept = [i for i in range(64) if closed[i][1] == b""]
        assert len(refused) == 56 and len(kept) == 8
        assert max(closed[i][0] for i in refused) < 0.5
        assert all(1.0 < closed[i][0] < 3.0 for i in kept)  # the idle deadline, 1.5 s after connecting
        for i in (64, 65):  # half a request line, a body that stopped: 408 after their 1 s deadline
            assert closed[i][1].startswith(b"HTTP/1.1 408") and closed[i][0] < 2.5, closed[i]
        assert b"did not arrive within 1 s" in closed[65][1]
        for sock in [*idle, half, body]:
            sock.close()
        with httpx.Client(timeout=5) as client:  # the address's connections were counted down again
            assert client.get(url + "health").status_code == 200


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="binds 127.0.1.x as sources")
def test_health_answers_when_every_connection_is_taken(checkpoint):
    """max_connections held by several clients, each within its own cap: other requests get 503, /health 200."""
    import time

    import httpx
    from helpers.cli import serving

    with serving(checkpoint, "max_connections=4", "max_connections_per_client=2", "access_log=false") as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        time.sleep(0.5)  # the server counts down the start-up probe's connection
        held = [_connect(port, f"127.0.1.{1 + i // 2}") for i in range(4)]
        try:
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.9"), timeout=5) as client:
                assert client.get(url + "health").status_code == 200
                assert client.get(url + "docs").status_code == 503
        finally:
            for sock in held:
                sock.close()


def test_a_huge_image_is_reduced_before_preprocessing_and_its_cost_counted():
    """A 16 Mpx upload is averaged down to the working size as it is decoded, and the budget counts the
    preprocessing copies, not the decoded pixels alone (they were ~300 MB for this image)."""
    import tracemalloc

    from mnistlab.serving.preprocess import ImageTooLargeError, prepare

    array = np.full((4000, 4000, 4), 255, dtype=np.uint8)
    array[800:3200, 1800:2200, :3] = 0  # a thick dark stroke on white paper
    data = png_bytes(Image.fromarray(array, "RGBA"))
    image = open_image(data)
    assert max(image.size) <= 1600
    tracemalloc.start()
    prepare(image, (1, 28, 28), "mnist")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 80 * MB, peak / MB
    with pytest.raises(ImageTooLargeError, match=r"would take 1\d\d MB to decode and prepare \(4000×4000 RGBA\)"):
        open_image(data, max_decoded_mb=100)  # 64 MB of pixels, but more with the copies that preprocessing makes
    photo = png_bytes(Image.fromarray(array[:3000, :, :3], "RGB"), "JPEG")  # 4000×3000: 34 MB of pixels
    assert open_image(photo, max_decoded_mb=40).size == (1000, 750)  # decoded at 1/2 scale (draft), then halved
