"""Seeded, stratified index splits (scikit-learn), so every class keeps its share in every split."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from mnistlab.core.errors import ConfigError


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
    kept, held = train_test_split(
        np.arange(n), test_size=holdout, stratify=labels.numpy(), random_state=seed, shuffle=True
    )
    return torch.from_numpy(np.sort(kept)), torch.from_numpy(np.sort(held))


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
