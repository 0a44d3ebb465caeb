"""Batches sliced from in-memory tensors: no Dataset, no collate, no worker processes.

A DataLoader over MNIST spends most of its time in per-sample Python (indexing, PIL, ToTensor, collate).
Here an epoch is one gather of the whole split into a fresh order, then each batch is a view.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor


class EpochPermutation:
    """The order of one epoch: a permutation seeded by (seed, epoch), sharded across ranks.

    Lightning calls ``set_epoch`` before every epoch (as for a DistributedSampler), so the order depends
    only on the epoch number: a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor | None:
        """Indices of this rank for the current epoch, or None for "all, in order" (no copy needed)."""
        if not self.shuffle and self.world_size == 1:
            return None
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        # every rank gets the same number of samples (as DistributedSampler does, by wrapping around)
        per_rank = math.ceil(self.size / self.world_size)
        order = torch.cat([order, order[: per_rank * self.world_size - self.size]])
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size)


class TensorBatchLoader:
    """Iterates ``(images, labels)`` batches over tensors that already sit on the target device."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler = EpochPermutation(len(labels), shuffle, seed, rank, world_size)
        self.batch_sampler = None  # Lightning inspects DataLoader-like objects for these two attributes

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        images, labels = self.images, self.labels
        order = self.sampler.indices()
        if order is not None:
            order = order.to(images.device)
            images, labels = images[order], labels[order]
        for i in range(len(self)):
            start = i * self.batch_size
            yield images[start : start + self.batch_size], labels[start : start + self.batch_size]
