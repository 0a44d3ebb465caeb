"""Reseed every epoch from (seed, epoch): a run resumed at an epoch boundary draws the same dropout masks
and augmentations as an uninterrupted one (Lightning's checkpoints do not carry the RNG states)."""

from __future__ import annotations

import lightning as L


class EpochSeed(L.Callback):
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # distinct streams per rank, so that DDP ranks do not draw identical augmentations
        L.seed_everything(self.seed * 100_003 + trainer.current_epoch * 1009 + trainer.global_rank, verbose=False)
