"""The learning rate as one ``train/lr`` scalar whatever the optimizer (Lightning's LearningRateMonitor names it
``lr-SGD``, ``lr-Adam``…, so a sweep over optimizers drew one card per optimizer, in a group of their own)."""

from __future__ import annotations

from typing import Any

import lightning as L

from mnistlab.core.record import TRAIN_LR


class LearningRate(L.Callback):
    def __init__(self, logging_interval: str = "epoch") -> None:
        if logging_interval not in ("epoch", "step"):
            raise ValueError(f"logging_interval={logging_interval!r} must be epoch or step")
        self.logging_interval = logging_interval

    def _log(self, trainer: L.Trainer) -> None:
        if not trainer.optimizers:
            return
        lr = float(trainer.optimizers[0].param_groups[0]["lr"])
        for logger in trainer.loggers:
            logger.log_metrics({TRAIN_LR: lr}, step=trainer.global_step)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.logging_interval == "epoch":
            self._log(trainer)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        every = trainer.log_every_n_steps  # type: ignore[attr-defined]  # set by Lightning's logger connector
        if self.logging_interval == "step" and trainer.global_step % every == 0:
            self._log(trainer)
