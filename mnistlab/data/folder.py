"""Users' images on disk: a folder with one subfolder per class (torchvision's ImageFolder layout, optionally
under ``train/``, ``val/``, ``test/``), or a CSV of image paths and labels."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnistlab.core.errors import DataError
from mnistlab.data.decode import IMAGE_SUFFIXES
from mnistlab.data.images import ImageSourceDataModule, Listing, same_number, sort_labels
from mnistlab.data.registry import register_dataset

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
PATH_COLUMNS = ("path", "file", "image", "filename", "filepath", "file_name", "image_path", "img")
LABEL_COLUMNS = ("label", "class", "target", "category", "labels", "class_name")
SPLIT_COLUMNS = ("split", "subset")


def is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def image_files(folder: Path) -> list[tuple[str, int, int]]:
    """(path relative to ``folder``, size, mtime_ns) of the images under ``folder``, recursively, sorted."""
    found = []
    for top, dirs, files in os.walk(folder):  # a linked class folder is read; links below it are not (loops)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if is_image(name):
                path = os.path.join(top, name)
                stat = os.stat(path)
                found.append((os.path.relpath(path, folder), stat.st_size, stat.st_mtime_ns))
    return found


class FileSourceDataModule(ImageSourceDataModule):
    """Items read from files: the listing and its manifest come from one walk (stat only)."""

    def __init__(self, **kwargs: Any) -> None:
        self._scanned: tuple[Listing, list[Path], Any] | None = None
        super().__init__(**kwargs)

    def scan(self) -> tuple[Listing, list[Path], Any]:
        """(listing, each item's file, manifest)."""
        raise NotImplementedError

    def _scan(self) -> tuple[Listing, list[Path], Any]:
        if self._scanned is None:
            self._scanned = self.scan()
        return self._scanned

    def manifest(self) -> Any:
        return self._scan()[2]

    def list_items(self) -> Listing:
        return self._scan()[0]

    def read_bytes(self, indices: Sequence[int]) -> list[bytes | None]:
        paths = self._scan()[1]
        out: list[bytes | None] = []
        for i in indices:
            try:
                out.append(paths[i].read_bytes())
            except OSError:
                out.append(None)
        return out


@register_dataset("folder")
class FolderDataModule(FileSourceDataModule):
    """``root/<class>/*.png`` (any depth below the class folder); with ``root/train/`` (and ``val/``,
    ``test/``) those splits are used, the classes being train's; otherwise val and test are carved, stratified
    and seeded. Class names are the folder names, sorted (as numbers when every one is: 2 before 10, as
    ``data=csv`` and ``data=hf`` sort their labels)."""

    source_key = "data.root"

    def __init__(self, root: str | None = None, **kwargs: Any) -> None:
        if not root:
            raise DataError("data.root is not set; point it at a folder with one subfolder of images per class")
        self.root = Path(str(root)).expanduser().resolve()
        if not self.root.is_dir():
            raise DataError(
                f"data.root={root} is not a folder; point it at a folder with one subfolder of images per class"
            )
        super().__init__(**kwargs)

    def source_name(self) -> str:
        return str(self.root)

    def scan(self) -> tuple[Listing, list[Path], Any]:
        children = {e.name: Path(e.path) for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(".")}
        names = ("train", "val", "valid", "validation", "test")  # train first: its folders are the classes
        parts: list[tuple[str | None, Path]] = [(None, self.root)]
        if "train" in children:
            parts = [(SPLIT_NAMES[n], children[n]) for n in names if n in children]
        listing, paths = Listing(classes=()), []
        manifest: list[Any] = []  # per split its class folders, then their files (path, size, time)
        for split, folder in parts:
            found = {
                e.name: image_files(Path(e.path))
                for e in sorted(os.scandir(folder), key=lambda e: e.name)
                if e.is_dir() and not e.name.startswith(".")
            }
            if split in (None, "train"):
                if not found:
                    raise DataError(
                        f"data.root={folder} holds no class folders; put each class's images in a subfolder named "
                        "after the class (root/cat/1.jpg, root/dog/2.jpg)"
                    )
                listing.classes = tuple(sort_labels({name for name, files in found.items() if files}))
                listing.problems = [
                    {"path": os.path.relpath(folder / name, self.root), "why": "the class folder holds no images"}
                    for name, files in found.items()
                    if not files
                ]
            index = {name: i for i, name in enumerate(listing.classes)}
            manifest.append((split, sorted(found)))  # class folders, the empty ones too
            for name, files in found.items():
                for rel, size, mtime in files:
                    path = folder / name / rel
                    listing.add(os.path.relpath(path, self.root), split, index.get(name, -1))
                    paths.append(path)
                    manifest.append((listing.names[-1], size, mtime))
        return listing, paths, manifest


@register_dataset("csv")
class CSVDataModule(FileSourceDataModule):
    """A CSV with an image path column (relative to the CSV's folder) and a label column, found by name
    (path/file/image/filename, label/class/target) or given; an optional split column (train/val/test)."""

    source_key = "data.csv"

    def __init__(
        self,
        csv: str | None = None,
        image_column: str | None = None,
        label_column: str | None = None,
        split_column: str | None = None,
        **kwargs: Any,
    ) -> None:
        if not csv:
            raise DataError("data.csv is not set; point it at a CSV file of image paths and labels")
        self.csv = Path(str(csv)).expanduser().resolve()
        if not self.csv.is_file():
            raise DataError(f"data.csv={csv} is not a file; point it at a CSV file of image paths and labels")
        self.columns = (image_column, label_column, split_column)
        super().__init__(**kwargs)

    def source_name(self) -> str:
        return str(self.csv)

    def _rows(self) -> tuple[list[dict[str, str]], str, str, str | None]:
        try:
            with open(self.csv, encoding="utf-8-sig", newline="") as f:
                sample = f.read(65536)
                f.seek(0)
                try:
                    dialect: Any = csv.Sniffer().sniff(sample, delimiters=",;\t|")
                except csv.Error:
                    dialect = csv.excel
                reader = csv.DictReader(f, dialect=dialect)
                rows = list(reader)
                header = [h for h in reader.fieldnames or [] if h is not None]
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise DataError(f"data.csv={self.csv} cannot be read as a UTF-8 CSV ({err})") from None
        lower = {h.strip().lower(): h for h in header}

        def column(given: str | None, names: tuple[str, ...], what: str, key: str) -> str | None:
            if given is not None:
                if given not in header:
                    raise DataError(
                        f"data.{key}={given!r} is not a column of data.csv={self.csv} (its columns: "
                        f"{', '.join(header) or 'none'})"
                    )
                return given
            found = next((lower[n] for n in names if n in lower), None)
            if found is None and what:
                raise DataError(
                    f"data.csv={self.csv} has no {what} column (its columns: {', '.join(header) or 'none'}); "
                    f"name one {'/'.join(names[:4])} or set data.{key}"
                )
            return found

        image = column(self.columns[0], PATH_COLUMNS, "image path", "image_column")
        label = column(self.columns[1], LABEL_COLUMNS, "label", "label_column")
        split = column(self.columns[2], SPLIT_COLUMNS, "", "split_column")
        assert image is not None and label is not None
        return rows, image, label, split

    def scan(self) -> tuple[Listing, list[Path], Any]:
        rows, image, label, split_column = self._rows()
        splits: list[str | None] = []
        for number, row in enumerate(rows, start=2):
            value = (row.get(split_column) or "").strip().lower() if split_column else ""
            if value and value not in SPLIT_NAMES:
                raise DataError(
                    f"data.csv={self.csv} line {number}: split {value!r} is not one of train, val, test (or empty)"
                )
            splits.append(SPLIT_NAMES.get(value))
        train_labels = {
            (row.get(label) or "").strip() for row, s in zip(rows, splits, strict=True) if s in (None, "train")
        }
        clash = same_number(train_labels - {""})
        if clash:
            raise DataError(
                f"data.csv={self.csv}: labels {clash[0]!r} and {clash[1]!r} are one number written two ways, which "
                "would make two classes; write each class's label one way"
            )
        listing = Listing(classes=tuple(sort_labels(train_labels - {""})))
        index = {name: i for i, name in enumerate(listing.classes)}
        stat = self.csv.stat()
        paths, manifest = [], [(self.csv.name, stat.st_size, stat.st_mtime_ns)]
        for row, split in zip(rows, splits, strict=True):
            name = (row.get(image) or "").strip()
            path = self.csv.parent / name  # relative to the CSV; an absolute path stays what it is
            listing.add(name, split, index.get((row.get(label) or "").strip(), -1))
            paths.append(path)
            try:
                info = path.stat()
                manifest.append((name, info.st_size, info.st_mtime_ns))
            except OSError:
                manifest.append((name, -1, -1))
        if not rows:
            raise DataError(f"data.csv={self.csv} has no rows; add one line per image (path,label)")
        return listing, paths, manifest
