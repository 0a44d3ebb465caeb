"""Tiny-ImageNet through Hugging Face ``datasets`` (``zh-plus/tiny-imagenet``: 100k train and 10k valid
images of 64×64, 200 classes), decoded once into a memory-mapped uint8 cache under the data dir."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mnistlab.core.errors import DataError, first_line
from mnistlab.core.files import write_text_atomic
from mnistlab.data.base import InMemoryDataModule
from mnistlab.data.registry import register_dataset

VAL_NAMES = ("valid", "validation", "val")


def open_hf_dataset(hf_path: str) -> Any:
    """A ``DatasetDict`` from the Hub name, or from a local folder: ``save_to_disk`` output, parquet files
    (``train-*.parquet``, ``valid-*.parquet``) or an imagefolder tree (``train/<class>/*.jpg``)."""
    from mnistlab.core.extras import require

    require("data=tiny_imagenet", "datasets")
    import datasets

    local = Path(hf_path).expanduser()
    try:
        if local.is_dir():
            if (local / "dataset_dict.json").is_file():
                return datasets.load_from_disk(str(local))
            if any(local.rglob("*.parquet")):
                return datasets.load_dataset("parquet", data_dir=str(local))
            return datasets.load_dataset("imagefolder", data_dir=str(local))
        return datasets.load_dataset(hf_path)
    except Exception as err:
        raise DataError(
            f"data.hf_path={hf_path} could not be loaded ({type(err).__name__}: {first_line(err)}); without internet, "
            "point data.hf_path at a local copy (save_to_disk, parquet or imagefolder)"
        ) from None


def decode_split(split: Any, size: int, target: Path) -> None:
    """Decode every image once (RGB, ``size``×``size``) into ``<target>.images.npy`` (N, 3, H, W) uint8 and
    ``<target>.labels.npy``; written under temporary names, then renamed, so a kill leaves no half cache."""
    from PIL import Image

    n = len(split)
    tmp_images = target.with_name(target.name + ".images.tmp.npy")
    images = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8, shape=(n, 3, size, size))
    labels = np.asarray(split["label"], dtype=np.int64)
    for i, example in enumerate(split):
        picture = example["image"].convert("RGB")  # ~2 % of Tiny-ImageNet is grayscale
        if picture.size != (size, size):
            picture = picture.resize((size, size), Image.Resampling.BILINEAR)
        images[i] = np.asarray(picture).transpose(2, 0, 1)
    images.flush()
    del images
    np.save(target.with_name(target.name + ".labels.npy"), labels)
    os.replace(tmp_images, target.with_name(target.name + ".images.npy"))


@register_dataset("tiny_imagenet")
class TinyImageNetDataModule(InMemoryDataModule):
    """Tiny-ImageNet: validation is the dataset's own valid split; a test split is carved from train,
    stratified and seeded (``test_size``). Later runs read the decoded cache in seconds."""

    def __init__(
        self, hf_path: str = "zh-plus/tiny-imagenet", data_dir: str = "data", image_size: int = 64, **kwargs: Any
    ) -> None:
        self.hf_path, self.image_size = hf_path, int(image_size)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(hf_path)).strip("_")
        self.cache_dir = Path(data_dir).expanduser().resolve() / "hf_cache" / f"{slug}_{self.image_size}"
        self._classes: tuple[str, ...] | None = None
        super().__init__(**kwargs)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.image_size, self.image_size)

    @property
    def classes(self) -> tuple[str, ...]:
        if self._classes is None:
            self.prepare_data()
            self._classes = tuple(json.loads((self.cache_dir / "classes.json").read_text()))
        return self._classes

    def _complete(self) -> bool:
        names = ["classes.json", *(f"{s}.{kind}.npy" for s in ("train", "val") for kind in ("images", "labels"))]
        return all((self.cache_dir / name).is_file() for name in names)

    def prepare_data(self) -> None:
        if self._complete():
            return
        dataset = open_hf_dataset(self.hf_path)
        val_name = next((name for name in VAL_NAMES if name in dataset), None)
        if "train" not in dataset or val_name is None:
            raise DataError(f"data.hf_path={self.hf_path} has splits {list(dataset)}; it needs train and valid")
        feature = dataset["train"].features["label"]
        names = list(getattr(feature, "names", None) or map(str, sorted(set(dataset["train"]["label"]))))
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        for split, source in (("train", "train"), ("val", val_name)):
            decode_split(dataset[source], self.image_size, self.cache_dir / split)
        write_text_atomic(self.cache_dir / "classes.json", json.dumps(names))

    def cache_key(self) -> tuple:
        return (self.cache_dir, (self.cache_dir / "train.images.npy").stat().st_mtime_ns)

    def read_official(self) -> dict[str, tuple[Tensor, Tensor]]:
        def read(split: str) -> tuple[Tensor, Tensor]:
            images = np.load(self.cache_dir / f"{split}.images.npy", mmap_mode="r")
            labels = np.load(self.cache_dir / f"{split}.labels.npy")
            return torch.from_numpy(np.array(images)), torch.from_numpy(labels)  # into memory, writable

        return {"train": read("train"), "val": read("val")}
