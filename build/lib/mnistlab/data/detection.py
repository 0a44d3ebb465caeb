"""MNIST digits scattered on canvases, with their boxes: the data of the CNN vs Faster R-CNN comparison.

Canvases are composed once from the IDX files (train digits for the train and val canvases, test digits for
the test canvases), seeded, and cached under ``<data_dir>/mnist_detection/``; later runs load them in a second.

Targets are one tensor per split, ``(N, max_digits, 5)`` float32 rows of ``(label, x1, y1, x2, y2)`` in pixels,
label ``-1`` for padding, so the in-memory loader slices them like class labels. With ``task=classification``
(one digit per canvas) the targets are the digit labels, for any classifier of the framework.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from mnistlab.core.errors import ConfigError
from mnistlab.core.files import atomic_write
from mnistlab.data.mnist import MNISTDataModule, idx_spec, load_split
from mnistlab.data.registry import register_dataset

TASKS = ("detection", "classification")
CACHE_VERSION = 1


def compose_canvases(
    digits: Tensor,
    labels: Tensor,
    count: int,
    canvas_size: int,
    num_digits: tuple[int, int],
    digit_size: tuple[int, int],
    seed: int,
    max_overlap: float = 0.1,
) -> tuple[Tensor, Tensor]:
    """``count`` canvases ``(count, 1, S, S)`` uint8 of 1–k digits scaled to ``digit_size`` px (the 28-px
    frame), placed at random with an IoU of at most ``max_overlap`` between ink boxes; and their targets."""
    from torchvision.ops import box_iou

    generator = torch.Generator().manual_seed(seed)
    low, high = num_digits
    canvases = torch.zeros(count, 1, canvas_size, canvas_size, dtype=torch.uint8)
    targets = torch.full((count, high, 5), -1.0)

    def randint(a: int, b: int) -> int:  # inclusive
        return int(torch.randint(a, b + 1, (1,), generator=generator))

    for i in range(count):
        boxes: list[Tensor] = []
        for _ in range(randint(low, high)):
            index = randint(0, len(digits) - 1)
            size = randint(*digit_size)
            digit = F.interpolate(digits[index : index + 1].float(), size=(size, size), mode="bilinear", antialias=True)
            digit = digit[0, 0].round().clamp(0, 255).to(torch.uint8)
            rows, cols = (digit > 64).nonzero(as_tuple=True)
            if len(rows) == 0:
                continue
            r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
            for _attempt in range(30):
                top, left = randint(-r0, canvas_size - r1), randint(-c0, canvas_size - c1)
                box = torch.tensor([left + c0, top + r0, left + c1, top + r1], dtype=torch.float32)
                if not boxes or float(box_iou(box[None], torch.stack(boxes)).max()) <= max_overlap:
                    break
            else:
                continue  # no room left on this canvas
            # paste the visible part of the (size × size) frame; the ink box is inside the canvas
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + size, canvas_size), min(left + size, canvas_size)
            region = canvases[i, 0, y0:y1, x0:x1]
            torch.maximum(region, digit[y0 - top : y1 - top, x0 - left : x1 - left], out=region)
            targets[i, len(boxes), 0] = float(labels[index])
            targets[i, len(boxes), 1:] = box
            boxes.append(box)
    return canvases, targets


@register_dataset("mnist_detection")
class MNISTDetectionDataModule(MNISTDataModule):
    """Canvases of MNIST digits with boxes (``task=detection``), or one digit per canvas with its label
    (``task=classification``, ``num_digits=[1,1]``) so that a CNN and a detector see the same images."""

    def __init__(
        self,
        data_dir: str = "data",
        digits: str = "mnist",
        task: str = "detection",
        canvas_size: int = 128,
        num_digits: tuple[int, int] | list[int] = (1, 5),
        digit_size: tuple[int, int] | list[int] = (24, 56),
        num_canvases: dict[str, int] | None = None,
        canvas_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if task not in TASKS:
            raise ConfigError(f"data.task={task!r} is not one of {', '.join(TASKS)}")
        low, high = (int(n) for n in num_digits)
        if not 1 <= low <= high:
            raise ConfigError(f"data.num_digits={list(num_digits)} must be [min, max] with 1 <= min <= max")
        if task == "classification" and high != 1:
            raise ConfigError("data.task=classification needs one digit per canvas: data.num_digits=[1,1]")
        small, large = (int(n) for n in digit_size)
        if not 8 <= small <= large <= int(canvas_size):
            raise ConfigError(f"data.digit_size={list(digit_size)} must be [min, max] px within 8..canvas_size")
        self.task, self.canvas_size, self.num_digits = task, int(canvas_size), (low, high)
        self.digit_size, self.canvas_seed = (small, large), int(canvas_seed)
        self.num_canvases = {"train": 8000, "val": 1000, "test": 1000, **(num_canvases or {})}
        for name, count in self.num_canvases.items():
            if int(count) < 1:
                raise ConfigError(f"data.num_canvases.{name}={count} must be at least 1")
        active = [k for k, v in (kwargs.get("augment") or {}).items() if v and not k.endswith("_p")]
        if task == "detection" and active:
            raise ConfigError(
                f"data.augment.{active[0]} is not supported with data.task=detection (it would move the digits "
                "off their boxes); set it to 0"
            )
        self.spec = idx_spec(digits, "data.digits")
        self.digits = digits
        super().__init__(data_dir=data_dir, **kwargs)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (1, self.canvas_size, self.canvas_size)

    def _settings(self) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            "dataset": self.digits,
            "canvas_size": self.canvas_size,
            "num_digits": self.num_digits,
            "digit_size": self.digit_size,
            "num_canvases": self.num_canvases,
            "canvas_seed": self.canvas_seed,
            "seed": self.seed,
        }

    def cache_key(self) -> tuple:
        return (*super().cache_key(), self.task, json.dumps(self._settings(), sort_keys=True))

    def cache_file(self) -> Path:
        digest = hashlib.sha256(json.dumps([self._settings(), super().cache_key()[1:]], default=str).encode())
        return self.raw_dir.parent.parent / "mnist_detection" / f"canvases-{digest.hexdigest()[:16]}.pt"

    def read_official(self) -> dict[str, tuple[Tensor, Tensor]]:
        path = self.cache_file()
        splits = None
        if path.is_file():
            try:
                splits = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a cache that cannot be read is made again
                splits = None
        if splits is None:
            splits = self._compose()
            with contextlib.suppress(OSError):  # a read-only data folder only costs the composition next time
                atomic_write(path, lambda f: torch.save(splits, f))
        if self.task == "classification":
            return {name: (images, targets[:, 0, 0].long()) for name, (images, targets) in splits.items()}
        return splits

    def _compose(self) -> dict[str, tuple[Tensor, Tensor]]:
        (train_digits, train_labels), (test_digits, test_labels) = (
            load_split(self.raw_dir, "train"),
            load_split(self.raw_dir, "test"),
        )
        # val canvases use the last 10 % of the train digits, train canvases the rest: no digit in both
        cut = len(train_labels) * 9 // 10
        sources = {
            "train": (train_digits[:cut], train_labels[:cut]),
            "val": (train_digits[cut:], train_labels[cut:]),
            "test": (test_digits, test_labels),
        }
        splits = {}
        for offset, (name, (digits, labels)) in enumerate(sources.items()):
            splits[name] = compose_canvases(
                digits,
                labels,
                int(self.num_canvases[name]),
                self.canvas_size,
                self.num_digits,
                self.digit_size,
                seed=self.canvas_seed * 1000 + self.seed * 10 + offset,
            )
        return splits

    def class_labels(self, split: str) -> Tensor:
        labels = self.splits[split][1]
        if self.task == "classification":
            return labels
        digits = labels[..., 0].flatten()
        return digits[digits >= 0].long()
