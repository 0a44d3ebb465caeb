"""CIFAR-10 and Tiny-ImageNet DataModules on small data in the real formats, and the ResNet."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import needs
from helpers.cli import FAST, run_cli
from torch import nn

from mnistlab.core.errors import DataError
from mnistlab.data import CIFAR10DataModule, TinyImageNetDataModule
from mnistlab.data.hf import open_hf_dataset
from mnistlab.models import ResNet


def make_tiny_imagenet(root: Path, classes: int = 200, per_class: int = 3) -> Path:
    """A dataset in zh-plus/tiny-imagenet's format (image + ClassLabel, train/valid), every 7th image grayscale."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    names = [f"n{index:08d}" for index in range(classes)]

    def split(count: int) -> datasets.Dataset:
        images, labels = [], []
        for label in range(classes):
            for _ in range(count):
                pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
                pixels[:, :, label % 3] = 255 * (label % 2)  # something learnable
                picture = Image.fromarray(pixels)
                images.append(picture.convert("L") if len(images) % 7 == 0 else picture)
                labels.append(label)
        features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
        return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)

    path = root / "tiny-imagenet-local"
    datasets.DatasetDict({"train": split(per_class), "valid": split(1)}).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_imagenet(tmp_path_factory) -> Path:
    return make_tiny_imagenet(tmp_path_factory.mktemp("hf"))


@needs("datasets")
def test_tiny_imagenet_splits_cache_and_grayscale(tiny_imagenet, tmp_path, monkeypatch):
    dm = TinyImageNetDataModule(hf_path=str(tiny_imagenet), data_dir=str(tmp_path), test_size=200, batch_size=50)
    dm.setup("fit")
    assert dm.input_shape == (3, 64, 64) and dm.num_classes == 200 and dm.classes[5] == "n00000005"
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [400, 200, 200]
    assert torch.bincount(dm.splits["test"][1], minlength=200).tolist() == [1] * 200  # stratified
    assert dm.splits["train"][0].dtype == torch.uint8 and dm.splits["train"][0].shape[1:] == (3, 64, 64)
    cache = next(iter((tmp_path / "image_cache").iterdir()))
    gray = np.load(cache / "images.npy", mmap_mode="r")[0]  # the first image was stored grayscale
    assert np.array_equal(gray[0], gray[1]) and np.array_equal(gray[1], gray[2])
    assert len(dm.mean) == 3
    # a later run reads the decoded cache and never opens the source again
    monkeypatch.setattr("mnistlab.data.hf.open_hf_dataset", lambda path: pytest.fail("opened again"))
    again = TinyImageNetDataModule(hf_path=str(tiny_imagenet), data_dir=str(tmp_path), test_size=200)
    again.setup("fit")
    assert torch.equal(again.splits["val"][1], dm.splits["val"][1])


@needs("datasets")
def test_hf_path_may_be_parquet_files(tiny_imagenet, tmp_path):
    import datasets

    for split, data in datasets.load_from_disk(str(tiny_imagenet)).items():
        data.to_parquet(str(tmp_path / f"{split}-00000-of-00001.parquet"))
    dataset = open_hf_dataset(str(tmp_path))
    assert set(dataset) == {"train", "validation"} and len(dataset["train"]) == 600  # datasets renames valid


@needs("datasets")
def test_unreachable_hub_is_a_clear_error(tmp_path, monkeypatch):
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read when the libraries are imported, hence also:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(DataError, match=r"could not be loaded .*point data\.hf_path at a local copy"):
        TinyImageNetDataModule(hf_path="someone/not-here", data_dir=str(tmp_path)).setup("fit")


@needs("datasets")
def test_tiny_imagenet_trains_end_to_end_through_the_cli(tiny_imagenet, tmp_path):
    run_cli(
        "mnistlab.train",
        *FAST,
        "data=tiny_imagenet",
        f"data.hf_path={tiny_imagenet}",
        "data.test_size=200",
        "data.batch_size=64",
        "data.eval_batch_size=200",
        "model=resnet",
        "model.channels=[8,16]",
        "model.blocks=[1,1]",
        "trainer.max_epochs=1",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["test/samples"] == 200
    assert metrics["sanity/batch_shape"] == [64, 3, 64, 64]
    assert metrics["sanity/expected_initial_loss"] == pytest.approx(np.log(200), abs=1e-3)
    assert metrics["hparams"]["data"] == "tiny_imagenet" and metrics["hparams"]["model"] == "resnet"


def write_fake_cifar(root: Path, per_batch: int = 60) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = (np.arange(per_batch) % 10).tolist()
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
    return root


def test_cifar10_from_torchvisions_format(tmp_path):
    root = write_fake_cifar(tmp_path)
    dm = CIFAR10DataModule(data_dir=str(root), val_size=50, augment={"hflip": True, "crop_scale": 0.8})
    dm.setup("fit")
    assert dm.input_shape == (3, 32, 32) and dm.classes[0] == "airplane"
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [250, 50, 60]
    with open(root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        first = np.frombuffer(pickle.load(f)["data"][0], np.uint8)
    train_and_val = torch.cat([dm.splits["train"][0], dm.splits["val"][0]]).flatten(1)
    assert (train_and_val == torch.from_numpy(first.copy())).all(1).any()  # CHW order kept
    run_cli(
        "mnistlab.train",
        *FAST,
        "data=cifar10",
        "data.val_size=50",
        "model=cnn_bn",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path / 'run'}",
        data_dir=root,
    )
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test/samples"] == 60


def test_cifar10_missing_says_where(tmp_path):
    with pytest.raises(DataError, match=r"CIFAR-10 not found in .*cifar-10-batches-py \(download=false\)"):
        CIFAR10DataModule(data_dir=str(tmp_path), download=False).setup("fit")


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64)])
def test_resnet_any_input(shape):
    model = ResNet(shape, 7, channels=[8, 16, 32], blocks=[1, 2, 1], dropout=0.2, activation="gelu", init="kaiming")
    assert model(torch.rand(2, *shape)).shape == (2, 7)
    # channels-last backward, as trained (a strided 1×1 conv there crashed torch 2.14.1 on the CPU)
    model = model.to(memory_format=torch.channels_last)
    model(torch.rand(16, *shape).contiguous(memory_format=torch.channels_last)).sum().backward()
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    assert len(drops) == 4 and all(m.p == 0.2 for m in drops)
    shortcuts = [b.shortcut for b in model.features if hasattr(b, "shortcut")]
    assert [isinstance(s, nn.Identity) for s in shortcuts] == [True, False, True, False]


def test_resnet_parameter_counts_quoted_in_the_readme():
    counts = [sum(p.numel() for p in ResNet((3, 64, 64), 200, blocks=b).parameters()) for b in ([2, 2, 2], [3, 3, 3])]
    assert counts == [2_826_504, 4_376_584]
