"""Stores the run's resolved config inside every checkpoint, so a checkpoint alone can be re-tested (its
``data`` section is read back as plain values; the rest is a record of the run), with the checkpoint's format
and the mnistlab version that wrote it."""

from __future__ import annotations

from typing import Any

import lightning as L

from mnistlab.core.compat import CHECKPOINT_VERSION, RUN_CONFIG_KEY
from mnistlab.core.record import FORMAT


class StoreRunConfig(L.Callback):
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        from mnistlab import __version__

        checkpoint[RUN_CONFIG_KEY] = {"config": self.config, "version": __version__, FORMAT: CHECKPOINT_VERSION}
