"""Seeded, stratified index splits (scikit-learn), so every class keeps its share in every split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from mnistlab.core.errors import ConfigError, DataError, first_line


def stratified_split(labels: torch.Tensor, holdout: int, seed: int, key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held out) with ``holdout`` samples held out in the class proportions of ``labels``.

    ``key`` names the config field that asked for the split, for the error message.
    """
    n, num_classes = len(labels), int(labels.max()) + 1
    if not num_classes <= holdout <= n - num_classes:
        raise ConfigError(
            f"{key}={holdout} must be between {num_classes} (one per class) and {n - num_classes} "
            f"for a split of {n} samples"
        )
    try:
        kept, held = train_test_split(
            np.arange(n), test_size=holdout, stratify=labels.numpy(), random_state=seed, shuffle=True
        )
    except ValueError as err:  # a class too small for this split (after an earlier one took its share)
        raise ConfigError(f"{key}={holdout} cannot be carved stratified from {n} samples: {first_line(err)}") from None
    return torch.from_numpy(np.sort(kept)), torch.from_numpy(np.sort(held))


def check_carvable(labels: torch.Tensor, keys: Sequence[str], classes: Sequence[str] = ()) -> None:
    """Every class of ``labels`` can give one sample to each split carved (``keys``: their settings) and keep one
    for training; one line naming the smallest class otherwise (scikit-learn's own error is a traceback)."""
    if not keys or not len(labels):
        return
    counts = torch.bincount(labels).tolist()
    small = [(count, label) for label, count in enumerate(counts) if 0 < count <= len(keys)]
    if small:
        count, label = min(small)
        name = classes[label] if label < len(classes) else str(label)
        more = f" ({len(small)} classes this small)" if len(small) > 1 else ""
        raise DataError(
            f"class {name!r} has {count} {'image' if count == 1 else 'images'} to carve {' and '.join(keys)} from, "
            f"stratified{more}; each class needs at least {len(keys) + 1} (one for training, one for each carved "
            "split): add images of it, leave it out, or give the val and test splits yourself"
        )


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images ``(N, C, H, W)``, on the [0, 1] scale."""
    count = images.numel() // images.shape[1]
    total = images.sum(dim=(0, 2, 3), dtype=torch.float64)
    squares = torch.zeros(images.shape[1], dtype=torch.float64)
    for chunk in images.split(8192):  # bounded memory for large splits
        squares += chunk.to(torch.float64).square().sum(dim=(0, 2, 3))
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return (mean / 255).tolist(), (std / 255).tolist()
