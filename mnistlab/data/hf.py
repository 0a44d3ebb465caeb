"""Any Hugging Face image-classification dataset (a Hub name, a local ``save_to_disk`` folder, parquet files
or an imagefolder tree) through ``datasets``; Tiny-ImageNet is one (``conf/data/tiny_imagenet.yaml``).

The images' encoded bytes are read from the Arrow tables and decoded by the shared decoder, in threads, into
the image cache; a later run with the cache in place does not open the dataset at all."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnistlab.core.errors import DataError, first_line
from mnistlab.data.folder import LABEL_COLUMNS
from mnistlab.data.images import ImageSourceDataModule, Listing, sort_labels
from mnistlab.data.registry import register_dataset

log = logging.getLogger(__name__)
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "valid", "val"), "test": ("test",)}
IMAGE_COLUMNS = ("image", "img", "picture", "pixel_values")


def open_hf_dataset(hf_path: str) -> Any:
    """A ``DatasetDict`` from the Hub name, or from a local folder: ``save_to_disk`` output, parquet files
    (``train-*.parquet``, ``valid-*.parquet``) or an imagefolder tree (``train/<class>/*.jpg``)."""
    from mnistlab.core.extras import require

    require("data=hf", "datasets")
    import datasets

    local = Path(hf_path).expanduser()
    try:
        if local.is_dir():
            if (local / "dataset_dict.json").is_file() or (local / "dataset_info.json").is_file():
                loaded = datasets.load_from_disk(str(local))
                return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict(train=loaded)
            if any(local.rglob("*.parquet")):
                return datasets.load_dataset("parquet", data_dir=str(local))
            return datasets.load_dataset("imagefolder", data_dir=str(local))
        return datasets.load_dataset(hf_path)
    except Exception as err:
        raise DataError(
            f"data.hf_path={hf_path} could not be loaded ({type(err).__name__}: {first_line(err)}); without internet, "
            "point data.hf_path at a local copy (save_to_disk, parquet or imagefolder)"
        ) from None


@register_dataset("hf")
class HFDataModule(ImageSourceDataModule):
    """The dataset's train split, and its validation (valid, val) and test splits where it has them (carved,
    stratified and seeded, where not). Image and label columns: the Image and ClassLabel features (or
    ``image_column``/``label_column``); class names from the ClassLabel, else the sorted label values."""

    source_key = "data.hf_path"

    def __init__(
        self,
        hf_path: str | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not hf_path:
            raise DataError("data.hf_path is not set; name a Hugging Face dataset or a local copy of one")
        local = Path(str(hf_path)).expanduser()
        self.hf_path = str(local.resolve()) if local.is_dir() else str(hf_path)
        self.columns = (image_column, label_column)
        self._parts: list[tuple[Any, str, int]] = []  # (split's dataset, image column, first global index)
        super().__init__(**kwargs)

    def source_name(self) -> str:
        return self.hf_path

    def manifest(self) -> Any:
        """A local copy: its files' relative paths, sizes and times; a Hub name: the name (the Hub's own cache
        pins a revision)."""
        local = Path(self.hf_path)
        if not local.is_dir():
            return [self.hf_path, *self.columns]
        files = []
        for top, dirs, names in os.walk(local):
            dirs.sort()
            for name in sorted(names):
                stat = os.stat(os.path.join(top, name))
                files.append((os.path.relpath(os.path.join(top, name), local), stat.st_size, stat.st_mtime_ns))
        return [files, *self.columns]

    def _column(self, split: Any, name: str) -> tuple[str, str]:
        """(image column, label column) of a split: given, or found by feature type, or by name."""
        import datasets

        features = split.features
        image, label = self.columns
        for given, key in ((image, "image_column"), (label, "label_column")):
            if given is not None and given not in features:
                raise DataError(
                    f"data.{key}={given!r} is not a column of the {name} split of data.hf_path={self.hf_path} "
                    f"(its columns: {', '.join(features)})"
                )
        image = image or next((c for c, f in features.items() if isinstance(f, datasets.Image)), None)
        image = image or next((c for c in IMAGE_COLUMNS if c in features), None)
        label = label or next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None)
        label = label or next((c for c in LABEL_COLUMNS if c in features), None)
        if image is None or label is None:
            what, key = ("image", "image_column") if image is None else ("label", "label_column")
            raise DataError(
                f"the {name} split of data.hf_path={self.hf_path} has no {what} column (its columns: "
                f"{', '.join(features)}); name it with data.{key}"
            )
        return image, label

    def list_items(self) -> Listing:
        import datasets

        dataset = open_hf_dataset(self.hf_path)
        found = {split: next((n for n in names if n in dataset), None) for split, names in SPLIT_NAMES.items()}
        if found["train"] is None:
            if len(dataset) != 1:
                raise DataError(
                    f"data.hf_path={self.hf_path} has splits {', '.join(dataset)} and none is called train; "
                    "save the training images as the train split"
                )
            found = {"train": next(iter(dataset)), "val": None, "test": None}
        train = dataset[found["train"]]
        image, label = self._column(train, "train")
        feature = train.features[label]
        if isinstance(feature, datasets.ClassLabel):
            classes = tuple(feature.names)
        else:
            classes = tuple(sort_labels({str(v) for v in train[label]}))
        listing = Listing(classes=classes)
        index = {name: i for i, name in enumerate(classes)}
        self._parts = []
        given = {s: n for s, n in found.items() if n is not None}
        kept: list[tuple[str, str, list[int]]] = []
        for split, name in given.items():
            part = dataset[name]
            image, label = self._column(part, name)
            named = isinstance(part.features[label], datasets.ClassLabel)
            if named and tuple(part.features[label].names) != classes:
                names = part.features[label].names
                labels = [index.get(names[v], -1) if v is not None and v >= 0 else -1 for v in part[label]]
            elif named:
                labels = [v if v is not None and v >= 0 else -1 for v in part[label]]
            else:
                labels = [index.get(str(v), -1) for v in part[label]]
            if split != "train" and all(v < 0 for v in labels):  # an unlabelled test split (labels -1): carve one
                log.info("data: the %s split of %s has no labels; %s is carved from train", name, self.hf_path, split)
                continue
            encoded = part.select_columns([image]).cast_column(image, datasets.Image(decode=False))
            self._parts.append((encoded, image, sum(len(k[2]) for k in kept)))
            kept.append((split, name, labels))
        for split, name, labels in kept:
            split_name = split if len(kept) > 1 else None
            for i, value in enumerate(labels):
                listing.add(f"{name}[{i}]", split_name, value)
        return listing

    def read_bytes(self, indices: Sequence[int]) -> list[bytes | None]:
        """The encoded bytes of a contiguous run of items (the decoder asks for chunks)."""
        out: list[bytes | None] = []
        if not len(indices):
            return out
        start, stop = indices[0], indices[-1] + 1
        for part, column, first in self._parts:
            low, high = max(start, first), min(stop, first + len(part))
            if low >= high:
                continue
            for cell in part[low - first : high - first][column]:
                data = (cell or {}).get("bytes")
                if data is None and (cell or {}).get("path"):
                    try:
                        data = Path(cell["path"]).read_bytes()
                    except OSError:
                        data = None
                out.append(data)
        return out


@register_dataset("tiny_imagenet")
class TinyImageNetDataModule(HFDataModule):
    """``zh-plus/tiny-imagenet`` (100k train and 10k valid images of 64×64, 200 classes): the name that runs and
    checkpoints made before ``data=hf`` record; ``conf/data/tiny_imagenet.yaml`` is now a preset of ``hf``."""

    def __init__(
        self, hf_path: str = "zh-plus/tiny-imagenet", image_size: int = 64, channels: int = 3, **kwargs: Any
    ) -> None:
        super().__init__(hf_path=hf_path, image_size=image_size, channels=channels, **kwargs)
