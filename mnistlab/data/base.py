"""The in-memory DataModule every dataset shares: splits, train statistics, loaders, device-side augmentation.

A dataset subclass says only what it is (``input_shape``, ``classes``) and how to read its official splits
as uint8 tensors ``(N, C, H, W)`` (``read_official``). Everything else is here, once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from mnistlab.core.errors import ConfigError, DataError, first_line
from mnistlab.core.fields import check
from mnistlab.data.augment import build_augmentation
from mnistlab.data.cache import cached
from mnistlab.data.loader import TensorBatchLoader
from mnistlab.data.permutation import permutation_order, permute
from mnistlab.data.splits import channel_stats, check_carvable, stratified_split

Split = tuple[Tensor, Tensor]


def holdout_count(size: float, n: int) -> int:
    """A split's size as a number of samples: a fraction in (0, 1) is that share of the ``n`` it is carved from."""
    return max(1, round(size * n)) if isinstance(size, float) and 0 < size < 1 else int(size)


def make_splits(
    official: dict[str, Split],
    val_size: float,
    test_size: float,
    seed: int,
    num_folds: int = 0,
    fold: int = 0,
    classes: Sequence[str] = (),
) -> dict[str, Split]:
    """train/val/test from a dataset's official splits: what a dataset lacks is carved from its train split,
    stratified and seeded (test first, then validation); a size under 1 is a fraction of the official train
    split. With ``num_folds`` > 1 the validation split is fold ``fold`` of a stratified k-fold of the train
    split (scikit-learn's StratifiedKFold) instead."""
    images, labels = official["train"]
    val_size, test_size = holdout_count(val_size, len(labels)), holdout_count(test_size, len(labels))
    splits = dict(official)
    carving = (("test", "data.test_size", True), ("val", "data.val_size", num_folds <= 1))
    check_carvable(labels, [key for split, key, carved in carving if carved and split not in official], classes)
    if "test" not in official:
        kept, held = stratified_split(labels, test_size, seed, "data.test_size")
        splits["test"] = (images[held], labels[held])
        images, labels = images[kept], labels[kept]
    if num_folds > 1:
        from sklearn.model_selection import StratifiedKFold

        folds = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
        kept, held = list(folds.split(labels.numpy().reshape(-1, 1), labels.numpy()))[fold]
        kept, held = torch.from_numpy(kept), torch.from_numpy(held)
        splits["val"] = (images[held], labels[held])
        images, labels = images[kept], labels[kept]
    elif "val" not in official:
        kept, held = stratified_split(labels, val_size, seed, "data.val_size")
        splits["val"] = (images[held], labels[held])
        images, labels = images[kept], labels[kept]
    splits["train"] = (images, labels)
    return splits


class InMemoryDataModule(L.LightningDataModule):
    """Batches leave the loader as uint8; ``on_after_batch_transfer`` turns them into floats in [0, 1]
    (augmented when training) on the device. Normalization belongs to the model (``mean``/``std`` of the
    train split are handed to it), so a checkpoint carries its own preprocessing."""

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        val_size: float = 5000,
        test_size: float = 0,
        seed: int = 42,
        download: bool = True,
        augment: dict[str, Any] | None = None,
        on_device: bool | str = "auto",
        num_folds: int = 0,
        fold: int = 0,
        permute_pixels: bool = False,
        permutation_seed: int = 0,
    ) -> None:
        super().__init__()
        if num_folds and not (int(num_folds) >= 2 and 0 <= int(fold) < int(num_folds)):
            raise ConfigError(
                f"data.num_folds={num_folds} and data.fold={fold}: need num_folds >= 2 and 0 <= fold < num_folds"
            )
        self.num_folds, self.fold = int(num_folds or 0), int(fold)
        self.permute_pixels, self.permutation_seed = bool(permute_pixels), int(permutation_seed)
        self.batch_size = int(check("data.batch_size", batch_size))
        self.eval_batch_size = int(check("data.eval_batch_size", eval_batch_size))
        self.val_size, self.test_size = val_size or 0, test_size or 0  # a number, or a fraction (< 1) of train
        self.seed = int(seed)
        self.download, self.on_device = download, on_device
        self.augmentation = build_augmentation(augment, self.input_shape) if augment else None
        self.splits: dict[str, Split] = {}
        self.mean: list[float] = []
        self.std: list[float] = []

    # -- what a dataset says about itself ---------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    @property
    def classes(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def cache_key(self) -> tuple:
        """What identifies the files read (paths, sizes, times): part of the in-process cache key."""
        raise NotImplementedError

    def read_official(self) -> dict[str, Split]:
        """The dataset's own splits as uint8 ``(N, C, H, W)`` and int64 labels: ``train``, and ``val`` or
        ``test`` where the dataset has them."""
        raise NotImplementedError

    def missing_files(self) -> list[str]:
        """Names of the dataset's files that are not on disk (datasets read from files say which)."""
        return []

    def download_files(self) -> None:
        """Fetch the missing files (torchvision's downloaders for the file-based datasets)."""
        raise NotImplementedError

    def explain_missing(self, missing: list[str], reason: str) -> str:
        """One line: which files are missing, where they go, and why they are not there."""
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download missing files when allowed; fail with one line saying where to put them otherwise."""
        if not self.missing_files():
            return
        reason = "download=false"
        if self.download:
            try:
                self.download_files()
            except Exception as err:  # network errors come as many types; the message says what to do
                reason = f"download failed: {type(err).__name__}: {first_line(err)}"
        missing = self.missing_files()
        if missing:
            raise DataError(self.explain_missing(missing, reason))

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.prepare_data()
        key = (
            type(self).__name__,
            self.cache_key(),
            self.val_size,
            self.test_size,
            self.seed,
            self.num_folds,
            self.fold,
            self.permute_pixels,
            self.permutation_seed,
        )
        splits, mean, std = cached(key, self._read_and_split)
        self.splits, self.mean, self.std = dict(splits), list(mean), list(std)

    def fingerprint(self) -> str:
        """A hash of the dataset's official splits as decoded arrays (the same data gives the same hash on any
        machine); computed once per set of files (``cache_key``) and kept in the user's cache."""
        from mnistlab.core.provenance import cached_fingerprint, fingerprint

        def compute() -> str:
            return fingerprint(t for split in self.read_official().values() for t in split)

        key = f"{type(self).__name__}:{self.cache_key()!r}"
        return cached(("fingerprint", key), lambda: cached_fingerprint(key, compute))

    def _read_and_split(self) -> tuple[dict[str, Split], list[float], list[float]]:
        """Splits (pixels permuted when asked) and the train split's per-channel statistics."""
        official = self.read_official()
        for name, split in official.items():
            self.check_split(name, *split)
        splits = make_splits(
            official, self.val_size, self.test_size, self.seed, self.num_folds, self.fold, self.classes
        )
        if self.permute_pixels:
            _, _, height, width = splits["train"][0].shape
            order = permutation_order(height * width, self.permutation_seed)
            splits = {name: (permute(images, order), labels) for name, (images, labels) in splits.items()}
        return (splits, *channel_stats(splits["train"][0]))

    def describe(self, split: str) -> str:
        """Where a split comes from, for error messages (datasets read from files name them)."""
        return f"the {split} split of {type(self).__name__}"

    def check_split(self, split: str, images: Tensor, labels: Tensor) -> None:
        """Shapes and labels checked when the data is read, not after a whole training."""
        if images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.input_shape):
            raise DataError(
                f"{self.describe(split)} holds images of shape {tuple(images.shape[1:])}, "
                f"not {tuple(self.input_shape)}; every split must have the same image size"
            )
        if len(images) == 0:
            raise DataError(f"{self.describe(split)} holds no images")
        if len(labels) != len(images):
            raise DataError(f"{self.describe(split)} has {len(images)} images but {len(labels)} labels")
        if labels.ndim == 1 and len(labels):
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= self.num_classes:
                bad = low if low < 0 else high
                raise DataError(
                    f"{self.describe(split)} has label {bad}, outside 0..{self.num_classes - 1} "
                    f"({self.num_classes} classes); replace the file with the original"
                )

    def class_labels(self, split: str) -> Tensor:
        """The class label of every sample of a split (for baselines and reports)."""
        return self.splits[split][1]

    def _data_device(self) -> torch.device:
        """GPU-resident data when training on a GPU (one copy beats a transfer per batch)."""
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        if self.on_device is False or device.type == "cpu" or (self.on_device == "auto" and device.type != "cuda"):
            return torch.device("cpu")
        return device

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
            # overfit: a fixed subset (overfit_batches is set on the trainer by Lightning)
            shuffle=train and not (trainer is not None and trainer.overfit_batches),  # type: ignore[attr-defined]
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

    def on_after_batch_transfer(self, batch: Split, dataloader_idx: int) -> Split:
        """uint8 → float in [0, 1] on the device, augmented when training."""
        images, labels = batch
        images = torch.div(images, 255)  # one pass: uint8 divided into float32
        trainer = self.trainer
        if self.augmentation is not None and trainer is not None and trainer.training:
            images = self.augmentation(images)
        return images, labels
