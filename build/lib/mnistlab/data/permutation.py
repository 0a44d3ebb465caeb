"""The pixel-permutation experiment: one fixed shuffle of pixel positions for every image. An MLP does not
care; a CNN loses the spatial structure it is built to exploit. Prediction applies the same order."""

from __future__ import annotations

import torch
from torch import Tensor


def permutation_order(num_pixels: int, seed: int) -> Tensor:
    """The fixed pixel order of ``data.permute_pixels``."""
    return torch.randperm(num_pixels, generator=torch.Generator().manual_seed(seed))


def permute(images: Tensor, order: Tensor) -> Tensor:
    """Images ``(N, C, H, W)`` with their pixel positions in ``order``."""
    n, c, h, w = images.shape
    return images.reshape(n, c, h * w)[:, :, order].reshape(n, c, h, w)
