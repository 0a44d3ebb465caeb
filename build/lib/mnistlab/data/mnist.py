"""MNIST and Fashion-MNIST as a LightningDataModule held entirely in memory as uint8 tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from mnistlab.core.errors import ConfigError, DataError
from mnistlab.data.base import InMemoryDataModule
from mnistlab.data.cache import cached
from mnistlab.data.idx import read_idx
from mnistlab.data.registry import register_dataset


@dataclass(frozen=True)
class IdxDataset:
    folder: str  # torchvision's folder name under the data root
    torchvision_class: str
    classes: tuple[str, ...]


IDX_DATASETS = {
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


def _read_split(raw: Path, split: str) -> tuple[Tensor, Tensor]:
    images_path, labels_path = (_find(raw, name) for name in FILES[split])
    assert images_path is not None and labels_path is not None
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{images_path.name} {tuple(images.shape)} and {labels_path.name} {tuple(labels.shape)} "
            f"in {raw} do not match; replace them with the original files"
        )
    return images.unsqueeze(1), labels.long()


def _stamp(raw: Path, split: str) -> tuple[int, ...]:
    paths = [_find(raw, name) for name in FILES[split]]
    return tuple(v for p in paths if p for v in (p.stat().st_size, p.stat().st_mtime_ns))


def load_split(raw: Path, split: str) -> tuple[Tensor, Tensor]:
    """Images ``(N, 1, H, W)`` uint8 and labels int64 of one split, read once per process.

    Sweeps run many jobs in one process: the cache makes every job after the first start instantly.
    The key includes file sizes and mtimes, so replaced files are read again.
    """
    return cached(("idx", raw, split, _stamp(raw, split)), lambda: _read_split(raw, split))


def idx_spec(name: str, key: str) -> IdxDataset:
    if name not in IDX_DATASETS:
        raise ConfigError(f"{key}={name!r} is not one of {', '.join(IDX_DATASETS)}")
    return IDX_DATASETS[name]


@register_dataset("mnist")
class MNISTDataModule(InMemoryDataModule):
    """MNIST from torchvision's IDX files: a stratified, seeded validation split carved from the official 60k
    train set; the official 10k test set for testing only."""

    spec = IDX_DATASETS["mnist"]

    def __init__(self, data_dir: str = "data", **kwargs: Any) -> None:
        self.raw_dir = Path(data_dir).expanduser().resolve() / self.spec.folder / "raw"
        super().__init__(**kwargs)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, 28, 28)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    def cache_key(self) -> tuple:
        return (self.raw_dir, _stamp(self.raw_dir, "train"), _stamp(self.raw_dir, "test"))

    def describe(self, split: str) -> str:
        if split not in FILES:
            return super().describe(split)
        return ", ".join(str(_find(self.raw_dir, name) or self.raw_dir / name) for name in FILES[split])

    def read_official(self) -> dict[str, tuple[Tensor, Tensor]]:
        return {"train": load_split(self.raw_dir, "train"), "test": load_split(self.raw_dir, "test")}

    def missing_files(self) -> list[str]:
        return [name for names in FILES.values() for name in names if _find(self.raw_dir, name) is None]

    def download_files(self) -> None:
        import torchvision.datasets

        cls = getattr(torchvision.datasets, self.spec.torchvision_class)
        for train in (True, False):
            cls(str(self.raw_dir.parent.parent), train=train, download=True)

    def explain_missing(self, missing: list[str], reason: str) -> str:
        return (
            f"{self.spec.folder} not found in {self.raw_dir} ({reason}). Put {', '.join(missing)} "
            f"(or the same names with .gz) in that folder, or point MNISTLAB_DATA_DIR or paths.data_dir "
            f"at a folder that holds {self.spec.folder}/raw/"
        )


@register_dataset("fashion_mnist")
class FashionMNISTDataModule(MNISTDataModule):
    """Fashion-MNIST: the same files, layout and splits as MNIST, ten kinds of clothing."""

    spec = IDX_DATASETS["fashion_mnist"]
