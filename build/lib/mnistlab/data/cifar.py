"""CIFAR-10 from torchvision's on-disk format (``cifar-10-batches-py``), held in memory as uint8."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mnistlab.core.errors import DataError
from mnistlab.data.base import InMemoryDataModule
from mnistlab.data.registry import register_dataset

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_batches(folder: Path, names: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for name in names:
        try:
            with open(folder / name, "rb") as f:
                # the format is a pickle of numpy arrays (as torchvision reads it); only open files you trust
                entry = pickle.load(f, encoding="latin1")
            images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64))
        except Exception as err:
            raise DataError(
                f"{folder / name} is not a CIFAR-10 batch file ({type(err).__name__}); replace it"
            ) from None
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


@register_dataset("cifar10")
class CIFAR10DataModule(InMemoryDataModule):
    """CIFAR-10: a stratified, seeded validation split of the 50k train images; the official 10k test set."""

    def __init__(self, data_dir: str = "data", **kwargs: Any) -> None:
        self.folder = Path(data_dir).expanduser().resolve() / FOLDER
        super().__init__(**kwargs)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, 32, 32)

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASSES

    def missing_files(self) -> list[str]:
        return [name for name in (*TRAIN_FILES, *TEST_FILES) if not (self.folder / name).is_file()]

    def cache_key(self) -> tuple:
        return tuple((name, (self.folder / name).stat().st_mtime_ns) for name in (*TRAIN_FILES, *TEST_FILES))

    def download_files(self) -> None:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(self.folder.parent), train=True, download=True)

    def explain_missing(self, missing: list[str], reason: str) -> str:
        return (
            f"CIFAR-10 not found in {self.folder} ({reason}). Unpack cifar-10-python.tar.gz so that "
            f"{', '.join(missing)} are in that folder, or point MNISTLAB_DATA_DIR or paths.data_dir at a "
            f"folder that holds {FOLDER}/"
        )

    def read_official(self) -> dict[str, tuple[Tensor, Tensor]]:
        return {"train": read_batches(self.folder, TRAIN_FILES), "test": read_batches(self.folder, TEST_FILES)}
