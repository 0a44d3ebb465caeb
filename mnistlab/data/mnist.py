"""MNIST and Fashion-MNIST as a LightningDataModule held entirely in memory as uint8 tensors."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from mnistlab.data.augment import build_augmentation
from mnistlab.data.idx import read_idx
from mnistlab.data.loader import TensorBatchLoader
from mnistlab.data.splits import channel_stats, stratified_split
from mnistlab.errors import ConfigError, DataError


@dataclass(frozen=True)
class IdxDataset:
    folder: str  # torchvision's folder name under the data root
    torchvision_class: str
    classes: tuple[str, ...]


DATASETS = {
    "mnist": IdxDataset("MNIST", "MNIST", tuple(str(d) for d in range(10))),
    "fashion_mnist": IdxDataset(
        "FashionMNIST",
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(raw: Path, name: str) -> Path | None:
    for candidate in (raw / name, raw / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def _load_split_cached(raw: Path, split: str, stamp: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    images_path, labels_path = (_find(raw, name) for name in FILES[split])
    assert images_path is not None and labels_path is not None
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{images_path.name} {tuple(images.shape)} and {labels_path.name} {tuple(labels.shape)} "
            f"in {raw} do not match; replace them with the original files"
        )
    return images.unsqueeze(1), labels.long()


@functools.cache
def _train_val_cached(raw: Path, stamp: tuple[int, ...], val_size: int, seed: int):
    images, labels = _load_split_cached(raw, "train", stamp)
    train_idx, val_idx = stratified_split(labels, val_size, seed, "data.val_size")
    train = (images[train_idx], labels[train_idx])
    return train, (images[val_idx], labels[val_idx]), channel_stats(train[0])


def _stamp(raw: Path, split: str) -> tuple[int, ...]:
    paths = [_find(raw, name) for name in FILES[split]]
    return tuple(v for p in paths if p for v in (p.stat().st_size, p.stat().st_mtime_ns))


def train_val_split(raw: Path, val_size: int, seed: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], Any]:
    """(train, val, (mean, std)) of the official train set, computed once per process and configuration."""
    return _train_val_cached(raw, _stamp(raw, "train"), val_size, seed)


def load_split(raw: Path, split: str) -> tuple[Tensor, Tensor]:
    """Images ``(N, 1, H, W)`` uint8 and labels int64 of one split, read once per process.

    Sweeps run many jobs in one process: the cache makes every job after the first start instantly.
    The key includes file sizes and mtimes, so replaced files are read again.
    """
    return _load_split_cached(raw, split, _stamp(raw, split))


class MNISTDataModule(L.LightningDataModule):
    """MNIST or Fashion-MNIST: stratified seeded train/val split of the official train set, the official
    test set for testing only, normalization statistics of the train split, augmentation on the device.

    Batches leave the loader as uint8; ``on_after_batch_transfer`` turns them into floats in [0, 1]
    (augmented when training) on the device. Normalization belongs to the model (``mean``/``std`` are
    handed to it), so a checkpoint carries its own preprocessing.
    """

    def __init__(
        self,
        dataset: str = "mnist",
        data_dir: str = "data",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        seed: int = 42,
        download: bool = True,
        augment: dict[str, Any] | None = None,
        on_device: bool | str = "auto",
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if dataset not in DATASETS:
            raise ConfigError(f"data.dataset={dataset!r} is not one of {', '.join(DATASETS)}")
        for key, value in [("data.batch_size", batch_size), ("data.eval_batch_size", eval_batch_size)]:
            if int(value) <= 0:
                raise ConfigError(f"{key}={value} must be a positive integer")
        self.spec = DATASETS[dataset]
        self.dataset = dataset
        self.raw_dir = Path(data_dir).expanduser().resolve() / self.spec.folder / "raw"
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size)
        self.val_size, self.seed, self.download = int(val_size), int(seed), download
        self.on_device, self.channels_last = on_device, channels_last
        self.augmentation = build_augmentation(augment)
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.mean: list[float] = []
        self.std: list[float] = []

    # -- what the model needs to know -------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, 28, 28)

    @property
    def num_classes(self) -> int:
        return len(self.spec.classes)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    # -- loading ----------------------------------------------------------------------------------
    def missing_files(self) -> list[str]:
        return [name for names in FILES.values() for name in names if _find(self.raw_dir, name) is None]

    def prepare_data(self) -> None:
        """Download with torchvision when files are missing; fail with where to put them otherwise."""
        if not self.missing_files():
            return
        reason = "download=false"
        if self.download:
            import torchvision.datasets

            cls = getattr(torchvision.datasets, self.spec.torchvision_class)
            try:
                for train in (True, False):
                    cls(str(self.raw_dir.parent.parent), train=train, download=True)
            except Exception as err:  # network errors come as many types; the message says what to do
                reason = f"download failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        missing = self.missing_files()
        if missing:
            raise DataError(
                f"{self.spec.folder} not found in {self.raw_dir} ({reason}). Put {', '.join(missing)} "
                f"(or the same names with .gz) in that folder, or point MNISTLAB_DATA_DIR or paths.data_dir "
                f"at a folder that holds {self.spec.folder}/raw/"
            )

    def setup(self, stage: str | None = None) -> None:
        if "train" not in self.splits and stage in (None, "fit", "validate"):
            if self.missing_files():
                self.prepare_data()
            train, val, (mean, std) = train_val_split(self.raw_dir, self.val_size, self.seed)
            self.splits["train"], self.splits["val"], self.mean, self.std = train, val, list(mean), list(std)
        if "test" not in self.splits and stage in (None, "test", "predict"):
            self.splits["test"] = self._load("test")

    def _load(self, split: str) -> tuple[Tensor, Tensor]:
        if self.missing_files():
            self.prepare_data()
        return load_split(self.raw_dir, split)

    def _data_device(self) -> torch.device:
        """GPU-resident data when training on a GPU (one 47 MB copy beats a transfer per batch)."""
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if self.on_device is False or device.type == "cpu" or (self.on_device == "auto" and device.type != "cuda"):
            return torch.device("cpu")
        return device

    # -- loaders ----------------------------------------------------------------------------------
    def _loader(self, split: str, train: bool) -> TensorBatchLoader:
        images, labels = self.splits[split]
        device = self._data_device()
        if images.device != device:  # moved once, when the trainer's device is known
            images, labels = self.splits[split] = (images.to(device), labels.to(device))
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return TensorBatchLoader(
            images,
            labels,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train and not (trainer is not None and trainer.overfit_batches),  # overfit: a fixed subset
            drop_last=False,
            seed=self.seed,
            rank=rank,
            world_size=world,
        )

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """uint8 → float in [0, 1] on the device, augmented (train only), in the model's memory format."""
        images, labels = batch
        images = images.float().div_(255)
        trainer = self.trainer
        if self.augmentation is not None and trainer is not None and trainer.training:
            images = self.augmentation(images)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, labels
