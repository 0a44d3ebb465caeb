"""Users' own images as datasets: the shared machinery of ``folder``, ``csv`` and ``hf``.

A source lists its items (a name for messages, a given split or none, a label) and reads their bytes; this
module checks them, decodes them once, in threads, into a memory-mappable uint8 cache under
``<data_dir>/image_cache/``, and hands the splits to :class:`InMemoryDataModule`. The cache is keyed by the
source's manifest (relative paths, sizes and modification times, or a dataset's fingerprint) and the image
size and channels: a changed or added file rebuilds it, an unchanged source only stats its files.

Bad data is found here, before training: unreadable, truncated, empty or oversized images, class folders
without images, labels outside the class list, the same bytes in two given splits. One line names the first
and the count; with ``skip_bad`` they are left out and listed (``skipped``) in the run's provenance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mnistlab.core.errors import ConfigError, DataError
from mnistlab.core.files import refuse_links, write_text_atomic
from mnistlab.data.augment import build_augmentation
from mnistlab.data.base import InMemoryDataModule
from mnistlab.data.decode import DEFAULT_MAX_PIXELS, decode_into, header, workers

log = logging.getLogger(__name__)

SIZE_RANGE = (16, 224)  # an inferred image size: the median side, clipped to this range
CACHE_VERSION = 2  # bump when the decoding or the class order changes: older caches are rebuilt
SPLITS = ("train", "val", "test")


@dataclass
class Listing:
    """What a source holds: per item a name (relative path; messages and the record), a given split (None:
    carved from train) and a label (-1: not one of ``classes``); ``problems`` found while listing."""

    classes: tuple[str, ...]
    names: list[str] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    def add(self, name: str, split: str | None, label: int) -> None:
        self.names.append(name)
        self.splits.append(split)
        self.labels.append(label)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_.")[:40] or "data"


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def temp_name(kind: str) -> str:
    """A build's temporary array: named after its host and process, so that a later build can tell it orphaned."""
    return f"{kind}.{slug(socket.gethostname())}-{os.getpid()}.tmp.npy"


def remove_orphan_arrays(folder: Path) -> None:
    """The temporary arrays a killed build left (its process gone from this host): removed, or each kill mid-build
    would leave a copy of the whole data set behind. Another host's, or a live process's, stay."""
    host = slug(socket.gethostname())
    for path in folder.glob("*.tmp.npy"):
        found = re.fullmatch(r"(?:images|labels)\.(.+)-(\d+)\.tmp\.npy", path.name)
        if found is None or found[1] != host or int(found[2]) == os.getpid():
            continue
        try:
            os.kill(int(found[2]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except OSError:
            continue  # alive, another user's


def infer_shape(sides: Sequence[int], gray: Sequence[bool], image_size: int | None, channels: int | None) -> tuple:
    """The median side (clipped to ``SIZE_RANGE``) and 1 channel when every image is gray, 3 otherwise; the
    values given win."""
    size = image_size or int(np.clip(round(float(np.median(sides))) if len(sides) else 32, *SIZE_RANGE))
    return size, channels or (1 if gray and all(gray) else 3)


def sort_labels(names: set[str]) -> list[str]:
    """Class names sorted as text, or as numbers when every name is an integer (2 before 10)."""
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        return sorted(names, key=int)
    return sorted(names)


def same_number(names: set[str]) -> tuple[str, str] | None:
    """Two labels that write one number two ways (1 and 1.0, 7 and 07: a spreadsheet's doing), or None."""
    seen: dict[float, str] = {}
    for name in sorted(names):
        try:
            value = float(name)
        except ValueError:
            continue
        if value in seen:
            return seen[value], name
        seen[value] = name
    return None


class ImageSourceDataModule(InMemoryDataModule):
    """Images of any size and mode → ``image_size`` × ``image_size`` × ``channels`` (null: inferred), cached.

    A subclass says what it reads: ``source_name`` (for the cache folder and messages), ``manifest`` (what
    identifies the files: cheap, stat only), ``list_items`` and ``read_bytes``."""

    source_key = "data.root"  # the setting that names the source, for messages
    max_pixels = DEFAULT_MAX_PIXELS  # larger images are bad data (a decompression bomb, or absurd for training)

    def __init__(
        self,
        data_dir: str = "data",
        image_size: int | None = None,
        channels: int | None = None,
        skip_bad: bool = False,
        **kwargs: Any,
    ) -> None:
        if image_size is not None and int(image_size) < 1:
            raise ConfigError(f"data.image_size={image_size} must be a positive integer (null: inferred)")
        if channels is not None and int(channels) not in (1, 3):
            raise ConfigError(f"data.channels={channels} is not one of 1, 3 (null: inferred)")
        self.wanted = (int(image_size) if image_size else None, int(channels) if channels else None)
        self.skip_bad = bool(skip_bad)
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.skipped: list[dict[str, str]] = []
        self._meta: dict[str, Any] | None = None
        # nothing is read before setup(): with an inferred size the augmentation is built once it is known
        self._augment = kwargs.pop("augment", None)
        known = all(self.wanted)
        super().__init__(augment=self._augment if known else None, **kwargs)

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        if self._augment and self.augmentation is None:
            self.augmentation = build_augmentation(self._augment, self.input_shape)

    # -- what a source says -----------------------------------------------------------------------
    def source_name(self) -> str:
        raise NotImplementedError

    def manifest(self) -> Any:
        """JSON-able; changes when any file read changes (relative paths, sizes, modification times)."""
        raise NotImplementedError

    def list_items(self) -> Listing:
        raise NotImplementedError

    def read_bytes(self, indices: Sequence[int]) -> list[bytes | None]:
        """The bytes of items ``indices`` of ``list_items`` (None: cannot be read)."""
        raise NotImplementedError

    # -- the cache --------------------------------------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        name = self.source_name()
        where = digest([name, *self.wanted, type(self).__name__])[:12]
        return self.data_dir / "image_cache" / f"{slug(Path(name).name or name)}-{where}"

    def _key(self) -> str:
        return digest([CACHE_VERSION, self.manifest(), *self.wanted, self.max_pixels])

    def meta(self) -> dict[str, Any]:
        """The cache's description (classes, names, splits, bad items, size), built when missing or stale."""
        if self._meta is None:
            key = self._key()
            try:
                meta = json.loads((self.cache_dir / "meta.json").read_text(encoding="utf-8"))
                fresh = meta.get("key") == key and (self.cache_dir / "images.npy").is_file()
            except (OSError, ValueError):
                meta, fresh = {}, False
            self._meta = meta if fresh else self._build(key)
        return self._meta

    def _build(self, key: str) -> dict[str, Any]:
        """Decode every item once into ``images.npy``/``labels.npy``; ``meta.json`` last, so a kill at any moment
        leaves no cache that looks whole."""
        listing = self.list_items()
        if len(listing.classes) < 2:
            raise DataError(
                f"{self.source_key}={self.source_name()} holds {len(listing.classes)} "
                f"{'class' if len(listing.classes) == 1 else 'classes'} with images "
                f"({', '.join(listing.classes) or 'none'}); a classifier needs at least two"
            )
        folder = self.cache_dir
        folder.mkdir(parents=True, exist_ok=True)
        refuse_links(folder / "meta.json")
        (folder / "meta.json").unlink(missing_ok=True)
        remove_orphan_arrays(folder)
        count = len(listing.names)
        size, channels = self._shape(listing)
        tmp = folder / temp_name("images")
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, channels, size, size))
        hashes: list[bytes] = [b""] * count

        def remember(i: int, data: bytes) -> None:
            hashes[i] = hashlib.blake2b(data, digest_size=16).digest()

        try:
            bad = decode_into(images, count, self.read_bytes, size, self.max_pixels, on_bytes=remember)
            images.flush()
            del images
            os.replace(tmp, folder / "images.npy")
        finally:
            tmp.unlink(missing_ok=True)
        bad.update(self._duplicates(listing, hashes, bad))
        for i, label in enumerate(listing.labels):
            if label < 0 and i not in bad:
                bad[i] = f"its label is not one of the {len(listing.classes)} classes of the train split"
        labels = np.asarray(listing.labels, dtype=np.int64)
        np.save(folder / temp_name("labels"), labels)
        os.replace(folder / temp_name("labels"), folder / "labels.npy")
        meta = {
            "key": key,
            "source": self.source_name(),
            "classes": list(listing.classes),
            "names": listing.names,
            "splits": listing.splits,
            "image_size": size,
            "channels": channels,
            "problems": listing.problems,
            "bad": {str(i): why for i, why in sorted(bad.items())},
        }
        write_text_atomic(folder / "meta.json", json.dumps(meta, ensure_ascii=False))
        return meta

    def _shape(self, listing: Listing) -> tuple[int, int]:
        """The wanted size and channels, inferred from the headers where null (logged in one line)."""
        image_size, channels = self.wanted
        if image_size and channels:
            return image_size, channels
        from concurrent.futures import ThreadPoolExecutor

        def sides(start: int) -> list[tuple[int, int, bool] | None]:
            out: list[tuple[int, int, bool] | None] = []
            for data in self.read_bytes(range(start, min(start + 256, len(listing.names)))):
                try:
                    out.append(header(data) if data else None)
                except Exception:  # bad files are reported by the decode that follows
                    out.append(None)
            return out

        with ThreadPoolExecutor(workers()) as pool:
            found = [h for part in pool.map(sides, range(0, len(listing.names), 256)) for h in part if h]
        size, channels = infer_shape(
            [s for w, h, _ in found for s in (w, h)], [g for _, _, g in found], image_size, channels
        )
        colour = "every image is gray" if channels == 1 else "some images are in colour"
        log.info(
            "data: %d images, %d classes → data.image_size=%d%s, data.channels=%d%s (set them to override)",
            len(listing.names),
            len(listing.classes),
            size,
            "" if self.wanted[0] else f" (the median side, within {SIZE_RANGE[0]}..{SIZE_RANGE[1]})",
            channels,
            "" if self.wanted[1] else f" ({colour})",
        )
        return size, channels

    @staticmethod
    def _duplicates(listing: Listing, hashes: list[bytes], bad: dict[int, str]) -> dict[int, str]:
        """Items whose bytes also stand in an earlier given split (train first): they would leak a test image
        into training."""
        first: dict[bytes, tuple[str, int]] = {}
        found: dict[int, str] = {}
        if not any(listing.splits):
            return found  # carved splits: nothing given to leak between
        order = sorted(
            (i for i in range(len(listing.splits)) if i not in bad and hashes[i]),
            key=lambda i: (SPLITS.index(listing.splits[i] or "train"), i),
        )
        for i in order:
            split = listing.splits[i] or "train"
            seen = first.setdefault(hashes[i], (split, i))
            if seen[0] != split:
                found[i] = f"the same bytes as {listing.names[seen[1]]} of the {seen[0]} split"
        return found

    # -- what InMemoryDataModule asks -------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        size, channels = self.wanted
        if not (size and channels):
            meta = self.meta()
            size, channels = int(meta["image_size"]), int(meta["channels"])
        return (channels, size, size)

    @property
    def classes(self) -> tuple[str, ...]:
        if self._meta is None:
            self.prepare_data()
        return tuple(self.meta()["classes"])

    def cache_key(self) -> tuple:
        return (str(self.cache_dir), self.meta()["key"], self.skip_bad)

    def describe(self, split: str) -> str:
        return f"the {split} split of {self.source_key}={self.source_name()}"

    def _skipped(self) -> list[dict[str, str]]:
        """Every bad item and problem as {path, why}; one DataError line unless ``skip_bad``."""
        meta = self.meta()
        names = meta["names"]
        found = [*meta["problems"], *({"path": names[int(i)], "why": why} for i, why in meta["bad"].items())]
        if found and not self.skip_bad:
            first = found[0]
            more = f" ({len(found)} bad items in all)" if len(found) > 1 else ""
            raise DataError(
                f"{first['path']}: {first['why']}{more}; fix or remove it, or set data.skip_bad=true to leave bad "
                "items out (they are listed in the run's provenance.json)"
            )
        return found

    def prepare_data(self) -> None:
        self.skipped = self._skipped()

    def read_official(self) -> dict[str, tuple[Tensor, Tensor]]:
        meta = self.meta()
        self.skipped = self._skipped()
        images = np.load(self.cache_dir / "images.npy", mmap_mode="r")
        labels = np.load(self.cache_dir / "labels.npy")
        bad = np.zeros(len(labels), dtype=bool)
        bad[[int(i) for i in meta["bad"]]] = True
        given = np.asarray([s or "train" for s in meta["splits"]])  # no split given: train (val/test carved)
        official = {}
        for split in SPLITS:
            rows = np.flatnonzero((given == split) & ~bad)
            if len(rows) or split == "train":
                official[split] = (torch.from_numpy(np.ascontiguousarray(images[rows])), torch.from_numpy(labels[rows]))
        if not len(official["train"][1]):
            raise DataError(f"{self.source_key}={self.source_name()} holds no readable training images")
        return official
