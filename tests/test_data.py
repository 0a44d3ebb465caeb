"""IDX reading, splits, train-only statistics, train-only augmentation, clear data errors, the loader."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers.data import write_idx, write_tiny_dataset

from mnistlab.core.errors import ConfigError, DataError
from mnistlab.data import MNISTDataModule, create_datamodule
from mnistlab.data.idx import read_idx
from mnistlab.data.loader import TensorBatchLoader
from mnistlab.data.splits import channel_stats, stratified_split

FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def test_read_idx_roundtrip_and_gzip(tmp_path):
    import gzip

    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array)
    assert torch.equal(read_idx(tmp_path / "a"), torch.from_numpy(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress((tmp_path / "a").read_bytes()))
    assert torch.equal(read_idx(tmp_path / "a.gz"), torch.from_numpy(array))


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(DataError, match="bad magic"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "ok", np.zeros((5, 28, 28), np.uint8))
    (tmp_path / "cut").write_bytes((tmp_path / "ok").read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_idx(tmp_path / "cut")


def test_stratified_split_is_stratified_disjoint_and_seeded():
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)
    train, val = stratified_split(labels, 100, seed=1, key="data.val_size")
    assert len(val) == 100 and len(train) == 900
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert Counter(labels[val].tolist()) == {0: 50, 1: 30, 2: 20}
    again, _ = stratified_split(labels, 100, seed=1, key="data.val_size")
    other, _ = stratified_split(labels, 100, seed=2, key="data.val_size")
    assert torch.equal(train, again) and not torch.equal(train, other)


@pytest.mark.parametrize("size", [0, 5, 996, 2000])
def test_split_size_out_of_range_is_a_config_error(size):
    labels = torch.arange(1000) % 10
    with pytest.raises(ConfigError, match=f"data.val_size={size} must be between 10"):
        stratified_split(labels, size, seed=0, key="data.val_size")


def test_channel_stats():
    images = torch.tensor([0, 255], dtype=torch.uint8).repeat(50).view(100, 1, 1, 1)
    mean, std = channel_stats(images)
    assert mean == pytest.approx([0.5]) and std == pytest.approx([0.5])


def _datamodule(root: Path, **kwargs) -> MNISTDataModule:
    return MNISTDataModule(data_dir=str(root), **{"val_size": 100, "batch_size": 32, **kwargs})


def test_datamodule_shapes_and_splits(tiny_data):
    dm = _datamodule(tiny_data)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    assert dm.input_shape == (1, 28, 28) and dm.num_classes == 10
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [500, 100, 200]
    assert Counter(dm.splits["val"][1].tolist()) == dict.fromkeys(range(10), 10)
    images, labels = next(iter(dm.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (32, 1, 28, 28) and labels.dtype == torch.int64
    fashion = create_datamodule({"dataset": "fashion_mnist", "data_dir": str(tiny_data)})
    assert fashion.classes[0] == "T-shirt/top" and fashion.raw_dir.parent.name == "FashionMNIST"


def test_statistics_come_from_the_train_split_only(tmp_path):
    root = write_tiny_dataset(tmp_path, n_train=200, n_test=50)
    dm = _datamodule(root, val_size=50)
    dm.setup("fit")
    train_images = dm.splits["train"][0].double() / 255
    assert dm.mean[0] == pytest.approx(train_images.mean().item(), rel=1e-9)
    assert dm.std[0] == pytest.approx(train_images.std(unbiased=False).item(), rel=1e-9)
    everything = torch.cat([dm.splits["train"][0], dm.splits["val"][0]]).double() / 255
    assert dm.mean[0] != pytest.approx(everything.mean().item(), rel=1e-9)


def _transfer(dm: MNISTDataModule, training: bool) -> torch.Tensor:
    dm.trainer = SimpleNamespace(training=training)
    images = dm.splits["train"][0][:16]
    out, _ = dm.on_after_batch_transfer((images, torch.zeros(16, dtype=torch.long)), 0)
    return out, images.float() / 255


def test_augmentation_only_when_training(tiny_data):
    dm = _datamodule(tiny_data, augment={"rotation": 30, "translate": 0.2})
    dm.setup("fit")
    out, plain = _transfer(dm, training=False)
    assert torch.equal(out, plain)
    out, plain = _transfer(dm, training=True)
    assert out.shape == plain.shape and not torch.allclose(out, plain)
    assert out.min() >= 0 and out.max() <= 1
    no_aug = _datamodule(tiny_data)
    no_aug.setup("fit")
    out, plain = _transfer(no_aug, training=True)
    assert torch.equal(out, plain)


def test_unknown_augment_key_is_a_config_error(tiny_data):
    with pytest.raises(ConfigError, match=r"data\.augment has unknown key"):
        _datamodule(tiny_data, augment={"rotate": 10})


def test_missing_data_names_folder_and_files(tmp_path):
    dm = _datamodule(tmp_path, download=False)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "\n" not in message
    assert all(name in message for name in FILES) and "MNISTLAB_DATA_DIR" in message


def test_failed_download_names_folder_and_files(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirrors")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match=r"download failed: RuntimeError: Error downloading .*t10k-labels-idx1-ubyte"):
        _datamodule(tmp_path).prepare_data()


def test_loader_covers_each_sample_once_per_epoch_in_a_seeded_order():
    images = torch.arange(103, dtype=torch.uint8).view(103, 1, 1, 1)
    loader = TensorBatchLoader(images, torch.arange(103), batch_size=10, shuffle=True, seed=3)
    assert len(loader) == 11
    epoch0 = torch.cat([y for _, y in loader])
    assert sorted(epoch0.tolist()) == list(range(103))
    loader.sampler.set_epoch(1)
    epoch1 = torch.cat([y for _, y in loader])
    assert not torch.equal(epoch0, epoch1)
    resumed = TensorBatchLoader(images, torch.arange(103), batch_size=10, shuffle=True, seed=3)
    resumed.sampler.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in resumed]), epoch1)
    ordered = TensorBatchLoader(images, torch.arange(103), batch_size=10)
    assert torch.equal(torch.cat([y for _, y in ordered]), torch.arange(103))


def test_loader_shards_across_ranks():
    ranks = [
        TensorBatchLoader(torch.zeros(10, 1, 1, 1), torch.arange(10), 4, shuffle=True, rank=r, world_size=3)
        for r in range(3)
    ]
    seen = [torch.cat([y for _, y in loader]).tolist() for loader in ranks]
    assert [len(s) for s in seen] == [4, 4, 4]
    assert set().union(*seen) == set(range(10))


def test_pixel_permutation_is_one_fixed_shuffle_for_every_split(tiny_data):
    plain = _datamodule(tiny_data)
    plain.setup("fit")
    shuffled = _datamodule(tiny_data, permute_pixels=True, permutation_seed=3)
    shuffled.setup("fit")
    order = torch.randperm(784, generator=torch.Generator().manual_seed(3))
    for split in ("train", "val", "test"):
        expected = plain.splits[split][0].flatten(1)[:, order].view(-1, 1, 28, 28)
        assert torch.equal(shuffled.splits[split][0], expected)
        assert torch.equal(shuffled.splits[split][1], plain.splits[split][1])
    assert shuffled.mean == pytest.approx(plain.mean)  # a permutation keeps the pixel statistics


def test_kfold_validation_folds_partition_the_train_set(tiny_data):
    folds = []
    for fold in range(5):
        dm = _datamodule(tiny_data, num_folds=5, fold=fold)
        dm.setup("fit")
        assert len(dm.splits["val"][1]) == 120 and len(dm.splits["train"][1]) == 480
        assert Counter(dm.splits["val"][1].tolist()) == dict.fromkeys(range(10), 12)  # stratified
        folds.append(dm.splits["val"][0].flatten(1))
    everything = torch.cat(folds)
    assert len(torch.unique(everything, dim=0)) == 600  # every train image in exactly one fold
    with pytest.raises(ConfigError, match="need num_folds >= 2"):
        _datamodule(tiny_data, num_folds=5, fold=5)
