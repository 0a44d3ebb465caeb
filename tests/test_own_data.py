"""Users' own images as datasets: a folder of class folders, a CSV, a Hugging Face dataset; decoded once into a
cache, splits stratified and seeded, bad files found before training."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import needs
from helpers.cli import FAST, run_cli
from helpers.images import png_claiming
from PIL import Image

from mnistlab.core.errors import DataError
from mnistlab.data.folder import CSVDataModule, FolderDataModule
from mnistlab.data.splits import channel_stats

CLASSES = ("café au lait", "cat", "dog")  # sorted as text
MODES = ("RGB", "L", "RGBA", "P", "I;16")


def picture(rng: np.random.Generator, label: int, index: int) -> Image.Image:
    """A small image of one of several modes and sizes; its class shows in one colour channel."""
    width, height = 16 + index % 5 * 8, 16 + index % 3 * 8
    pixels = rng.integers(0, 120, size=(height, width, 3), dtype=np.uint8)
    pixels[:, :, label % 3] = 250
    image = Image.fromarray(pixels)
    mode = MODES[index % len(MODES)]
    if mode == "I;16":
        return Image.fromarray(pixels[:, :, (label + 1) % 3].astype(np.uint16) * 257)  # a random channel
    if mode == "RGBA":
        return Image.fromarray(np.dstack([pixels, np.full((height, width), 128, np.uint8)]))
    return image.convert(mode) if mode != "RGB" else image


def make_folder(root: Path, per_class: int = 60, classes: tuple[str, ...] = CLASSES, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            picture(rng, label, index).save(root / name / f"{index:03d}.png")
    return root


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("own") / "pets")


def folder(root: Path, data_dir: Path, **kwargs) -> FolderDataModule:
    settings = {"val_size": 0.1, "test_size": 0.1, "seed": 1, "batch_size": 16, **kwargs}
    dm = FolderDataModule(root=str(root), data_dir=str(data_dir), **settings)
    dm.setup("fit")
    return dm


def test_folder_splits_are_stratified_seeded_and_measured_on_train(pets, tmp_path):
    dm = folder(pets, tmp_path)
    assert dm.classes == CLASSES and dm.input_shape == (3, 24, 24)  # the median side; colour images among them
    sizes = {split: len(dm.splits[split][1]) for split in ("train", "val", "test")}
    assert sizes == {"train": 144, "val": 18, "test": 18}
    for split in ("val", "test"):
        assert torch.bincount(dm.splits[split][1], minlength=3).tolist() == [6, 6, 6]  # stratified
    assert dm.mean == pytest.approx(channel_stats(dm.splits["train"][0])[0])  # train statistics only
    assert dm.mean != pytest.approx(channel_stats(torch.cat([s[0] for s in dm.splits.values()]))[0])
    same = folder(pets, tmp_path)
    other = folder(pets, tmp_path, seed=2)
    assert torch.equal(same.splits["test"][0], dm.splits["test"][0])
    assert not torch.equal(other.splits["test"][0], dm.splits["test"][0])
    gray = folder(pets, tmp_path, image_size=8, channels=1)
    assert gray.input_shape == (1, 8, 8) and gray.splits["train"][0].shape[1:] == (1, 8, 8)


def test_modes_and_exif_rotation_are_decoded_as_seen(tmp_path):
    root = tmp_path / "modes"
    make_folder(root, per_class=3, classes=("a", "b"))
    Image.fromarray(np.full((10, 12), 40000, np.uint16)).save(root / "a" / "deep.png")  # I;16
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # the left half white as stored; the camera says: turn 90° clockwise (top is white)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(root / "b" / "photo.jpg", exif=exif.tobytes(), quality=95)
    dm = folder(root, tmp_path / "data", image_size=16, channels=3, val_size=2, test_size=2)
    meta = dm.meta()
    images = np.load(dm.cache_dir / "images.npy")
    deep = images[meta["names"].index(os.path.join("a", "deep.png"))]
    assert (deep == round(40000 / 257)).all()  # 16-bit gray scaled to 8 bits, the same in every channel
    photo = images[meta["names"].index(os.path.join("b", "photo.jpg"))].astype(float)
    assert photo[:, :6].mean() > 200 and photo[:, 10:].mean() < 50  # top white, bottom black
    assert abs(photo[:, :, :8].mean() - photo[:, :, 8:].mean()) < 10  # left and right alike


def test_the_cache_is_reused_and_a_changed_file_rebuilds_it(tmp_path, monkeypatch):
    import mnistlab.data.images as images

    root = make_folder(tmp_path / "few", per_class=8, classes=("x", "y"))
    calls = []
    decode = images.decode_into
    monkeypatch.setattr(images, "decode_into", lambda *a, **k: calls.append(1) or decode(*a, **k))
    lazy = FolderDataModule(root=str(root), data_dir=str(tmp_path / "data"), augment={"crop_scale": 0.8})
    assert not calls and lazy.augmentation is None  # nothing read before setup
    first = folder(root, tmp_path / "data", val_size=2, test_size=2, augment={"crop_scale": 0.8})
    assert first.augmentation is not None  # built once the inferred size is known
    again = folder(root, tmp_path / "data", val_size=2, test_size=2)
    assert len(calls) == 1 and torch.equal(again.splits["train"][0], first.splits["train"][0])
    picture(np.random.default_rng(5), 0, 7).save(root / "x" / "003.png")  # new content, new size and time
    os.utime(root / "x" / "003.png", ns=(1, 1))
    folder(root, tmp_path / "data", val_size=2, test_size=2)
    assert len(calls) == 2
    (root / "y" / "new.png").write_bytes((root / "y" / "000.png").read_bytes())
    added = folder(root, tmp_path / "data", val_size=2, test_size=2)
    assert len(calls) == 3 and sum(len(s[1]) for s in added.splits.values()) == 17
    assert len(list((tmp_path / "data" / "image_cache").iterdir())) == 1  # rebuilt in place
    assert not list((tmp_path / "data" / "image_cache").rglob("*tmp*"))


def make_bad_splits(root: Path) -> Path:
    """train/ and test/ with a corrupt file, an empty one, one over the pixel budget, an empty class folder and
    a test image that is a train image."""
    make_folder(root / "train", per_class=12, classes=("a", "b"))
    make_folder(root / "test", per_class=3, classes=("a", "b"), seed=1)
    (root / "train" / "empty_class").mkdir()
    (root / "train" / "a" / "broken.png").write_bytes((root / "train" / "a" / "000.png").read_bytes()[:60])
    (root / "train" / "b" / "zero.jpg").write_bytes(b"")
    (root / "train" / "b" / "huge.png").write_bytes(png_claiming(50_000, 50_000))  # over the pixel budget
    (root / "test" / "b" / "copy.png").write_bytes((root / "train" / "b" / "001.png").read_bytes())
    return root


def test_bad_data_is_one_line_or_skipped_and_listed(tmp_path):
    root = make_bad_splits(tmp_path / "bad")
    with pytest.raises(DataError) as raised:
        folder(root, tmp_path / "data")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{os.path.join('train', 'empty_class')}: the class folder holds no images (5 bad")
    assert "data.skip_bad=true" in message
    dm = folder(root, tmp_path / "data", skip_bad=True, val_size=2)
    whys = {item["path"]: item["why"] for item in dm.skipped}
    assert set(whys) == {
        os.path.join("train", "empty_class"),
        os.path.join("train", "a", "broken.png"),
        os.path.join("train", "b", "zero.jpg"),
        os.path.join("train", "b", "huge.png"),
        os.path.join("test", "b", "copy.png"),
    }
    assert "at most 16,000,000 pixels" in whys[os.path.join("train", "b", "huge.png")]
    assert "truncated" in whys[os.path.join("train", "a", "broken.png")]
    assert "0 bytes" in whys[os.path.join("train", "b", "zero.jpg")]
    assert whys[os.path.join("test", "b", "copy.png")].startswith("the same bytes as train/b/001.png")
    assert dm.classes == ("a", "b")
    assert len(dm.splits["test"][1]) == 6 and len(dm.splits["train"][1]) + len(dm.splits["val"][1]) == 24
    for bad in whys:  # mended: the same folder is good data now
        if (root / bad).is_dir():
            (root / bad).rmdir()
        else:
            (root / bad).unlink()
    assert folder(root, tmp_path / "data", val_size=2).skipped == []


def test_csv_paths_labels_and_splits(tmp_path):
    make_folder(tmp_path / "pics", per_class=10, classes=("0", "1", "2", "10"))
    rows = ["split;Filename;Class"]
    for name in ("0", "1", "2", "10"):
        for index in range(10):
            rows.append(f"{'test' if index < 2 else 'train'};pics/{name}/{index:03d}.png;{name}")
    rows.append("test;pics/0/001.png;99")  # a label train never has
    rows.append("train;pics/gone.png;0")  # no such file
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"pics/0/001.png: its label is not one of the 4 classes .* \(2 bad items"):
        CSVDataModule(csv=str(tmp_path / "labels.csv"), data_dir=str(tmp_path / "data"), val_size=4).setup()
    dm = CSVDataModule(csv=str(tmp_path / "labels.csv"), data_dir=str(tmp_path / "data"), val_size=4, skip_bad=True)
    dm.setup()
    assert dm.classes == ("0", "1", "2", "10")  # numbers sorted as numbers
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [28, 4, 8]
    assert [item["path"] for item in dm.skipped] == ["pics/0/001.png", "pics/gone.png"]
    (tmp_path / "bare.csv").write_text(
        "name,label\n" + "".join(f"pics/{n}/00{i}.png,{n}\n" for n in "01" for i in "01")
    )
    with pytest.raises(DataError, match=r"has no image path column \(its columns: name, label\)"):
        CSVDataModule(csv=str(tmp_path / "bare.csv"), data_dir=str(tmp_path / "data")).setup()
    chosen = CSVDataModule(
        csv=str(tmp_path / "bare.csv"), image_column="name", data_dir=str(tmp_path / "data"), val_size=2
    )
    assert chosen.classes == ("0", "1") and chosen.list_items().names[0] == "pics/0/000.png"


@needs("datasets")
def test_hugging_face_dataset_with_class_labels_and_strings(tmp_path):
    import datasets

    from mnistlab.data.hf import HFDataModule

    rng = np.random.default_rng(0)
    names = ["ant", "bee", "wasp"]

    def split(count: int, labels: bool = True) -> datasets.Dataset:
        rows = [(picture(rng, i % 3, i), i % 3) for i in range(count)]
        if labels:
            features = datasets.Features({"img": datasets.Image(), "kind": datasets.ClassLabel(names=names)})
            return datasets.Dataset.from_dict(
                {"img": [r[0] for r in rows], "kind": [r[1] for r in rows]}, features=features
            )
        features = datasets.Features({"img": datasets.Image(), "insect": datasets.Value("string")})
        return datasets.Dataset.from_dict(
            {"img": [r[0] for r in rows], "insect": [names[r[1]] for r in rows]}, features=features
        )

    datasets.DatasetDict({"train": split(60), "test": split(15)}).save_to_disk(str(tmp_path / "insects"))
    dm = HFDataModule(hf_path=str(tmp_path / "insects"), data_dir=str(tmp_path / "data"), val_size=0.2)
    dm.setup()
    assert dm.classes == tuple(names) and dm.input_shape[0] == 3
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [48, 12, 15]
    assert torch.bincount(dm.splits["val"][1]).tolist() == [4, 4, 4]
    split(30, labels=False).save_to_disk(str(tmp_path / "plain"))
    plain = HFDataModule(
        hf_path=str(tmp_path / "plain"),
        label_column="insect",
        data_dir=str(tmp_path / "data"),
        val_size=3,
        test_size=3,
        image_size=12,
    )
    plain.setup()
    assert plain.classes == tuple(names) and plain.input_shape[1:] == (12, 12)
    unlabelled = split(6).map(lambda row: {"kind": -1})  # a test split without labels, as on the Hub
    datasets.DatasetDict({"train": split(30), "test": unlabelled}).save_to_disk(str(tmp_path / "hub_like"))
    hub_like = HFDataModule(
        hf_path=str(tmp_path / "hub_like"), data_dir=str(tmp_path / "data"), val_size=3, test_size=3
    )
    hub_like.setup()
    assert [len(hub_like.splits[s][1]) for s in ("train", "val", "test")] == [24, 3, 3]  # test carved instead


def test_a_folder_trains_end_to_end_with_bad_files_skipped(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=20)
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    run_cli(
        "mnistlab.train",
        *FAST,
        "data=folder",
        f"data.root={root}",
        "data.val_size=0.2",
        "data.skip_bad=true",
        "trainer.max_epochs=1",
        "model=linear",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["classes"] == list(CLASSES)
    provenance = json.loads((tmp_path / "run" / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["data"]["skipped"] == [
        {"path": os.path.join("cat", "broken.png"), "why": provenance["data"]["skipped"][0]["why"]}
    ]
    assert "not a PNG" in provenance["data"]["skipped"][0]["why"]


def test_numbered_class_folders_sort_as_numbers_and_keep_their_images(tmp_path):
    """Folders 1, 2, 10 are classes 0, 1, 2 (as data=csv and data=hf sort numbers), each with its own images."""
    root = tmp_path / "numbers"
    for channel, name in enumerate(("10", "2", "1")):  # folder 10 holds red images, 2 green, 1 blue
        (root / name).mkdir(parents=True)
        for index in range(6):
            pixels = np.full((12, 12 + index, 3), 20, np.uint8)
            pixels[:, :, channel] = 240
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    dm = folder(root, tmp_path / "data", val_size=3, test_size=3)
    assert dm.classes == ("1", "2", "10")
    images, labels = (torch.cat([s[i] for s in dm.splits.values()]) for i in (0, 1))
    colours = images.float().mean(dim=(2, 3)).argmax(dim=1).tolist()
    assert sorted((dm.classes[label], colour) for label, colour in zip(labels.tolist(), colours, strict=True)) == [
        *[("1", 2)] * 6,
        *[("10", 0)] * 6,
        *[("2", 1)] * 6,
    ]


def test_a_class_too_small_to_carve_splits_from_is_one_line(tmp_path):
    root = make_folder(tmp_path / "tiny", per_class=8, classes=("a", "b"))
    make_folder(root, per_class=2, classes=("rare",))
    with pytest.raises(DataError) as raised:
        folder(root, tmp_path / "data", val_size=2, test_size=3, image_size=8)
    assert str(raised.value).startswith(
        "class 'rare' has 2 images to carve data.test_size and data.val_size from, stratified; each class needs "
        "at least 3"
    )
    dm = folder(root, tmp_path / "data", val_size=2, test_size=3, image_size=8, num_folds=2)  # val: a fold
    assert dm.classes == ("a", "b", "rare") and len(dm.splits["test"][1]) == 3


def test_a_build_killed_midway_leaves_no_copy_behind(tmp_path):
    """A killed build's temporary array (its process gone) is removed by the next build; a live one's is kept."""
    import socket
    import subprocess
    import sys

    from mnistlab.data.images import slug

    root = make_folder(tmp_path / "few", per_class=4, classes=("x", "y"))
    dm = folder(root, tmp_path / "data", val_size=2, test_size=2, image_size=8)
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    host = slug(socket.gethostname())
    orphan = dm.cache_dir / f"images.{host}-{gone.pid}.tmp.npy"
    live = dm.cache_dir / f"images.{host}-{os.getppid()}.tmp.npy"
    elsewhere = dm.cache_dir / f"images.{host}x-{gone.pid}.tmp.npy"  # another host's build: not ours to judge
    for path in (orphan, live, elsewhere):
        path.write_bytes(b"\x93NUMPY")
    (root / "x" / "000.png").unlink()  # stale: the next run rebuilds
    folder(root, tmp_path / "data", val_size=2, test_size=2, image_size=8)
    assert sorted(p.name for p in dm.cache_dir.iterdir()) == sorted(
        ["images.npy", "labels.npy", "meta.json", live.name, elsewhere.name]
    )


def test_a_jpeg_photo_is_cached_as_predict_and_serve_see_it(tmp_path):
    """The training decoder reads a large JPEG whole (no reduced-scale draft), as prediction does: equal pixels."""
    from mnistlab.serving.preprocess import open_image, prepare

    root = tmp_path / "photos"
    y, x = np.mgrid[0:240, 0:320]
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for index in range(3):
            pixels = np.stack([x * 255 // 320, y * 255 // 240, (x + y + index * 40) * 3 % 256], -1).astype(np.uint8)
            pixels[60:120, 80 + 40 * (name == "b") : 160] = 255
            Image.fromarray(pixels).save(root / name / f"{index}.jpg", quality=90)
    dm = folder(root, tmp_path / "data", val_size=2, test_size=2, image_size=32, channels=3)
    cached = np.load(dm.cache_dir / "images.npy")
    for i, name in enumerate(dm.meta()["names"]):
        served = prepare(open_image(root / name), (3, 32, 32), "resize")
        np.testing.assert_array_equal(cached[i] / np.float32(255), served, err_msg=name)


def test_csv_labels_writing_one_number_two_ways_are_one_line(tmp_path):
    """A spreadsheet that writes 1 in some rows and 1.0 in others would make two classes of one: refused."""
    make_folder(tmp_path / "pics", per_class=4, classes=("1", "2"))
    rows = [f"pics/{n}/{i:03d}.png,{n}" for n in "12" for i in range(4)]
    rows[3] = "pics/1/003.png,1.0"
    (tmp_path / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"labels '1' and '1.0' are one number written two ways"):
        CSVDataModule(csv=str(tmp_path / "labels.csv"), data_dir=str(tmp_path / "data")).setup()
