"""Progress: epochs counted from 1, as ``best_epoch`` and the reports count them. On a terminal, Lightning's
TQDM bar, redrawn at least every few seconds however slow a batch is; into a file or a pipe (a sweep's log, a
cluster job), one plain log line per epoch and, in a long epoch, one every ``log_every_s`` seconds."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar

from mnistlab.core.record import TRAIN, VAL

log = logging.getLogger("mnistlab.progress")


class RunProgressBar(TQDMProgressBar):
    """Lightning's TQDM bar, redrawn every ``refresh_rate`` batches or after ``max_quiet_s`` seconds, whichever
    comes first (redrawing every step costs more than a small model's step); plain lines when stderr is not a
    terminal (``plain=true`` forces them)."""

    def __init__(
        self,
        refresh_rate: int = 25,
        max_quiet_s: float = 2.0,
        log_every_s: float = 30.0,
        plain: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.max_quiet_s, self.log_every_s = max_quiet_s, log_every_s
        self.plain = not sys.stderr.isatty() if plain is None else plain
        self._drawn_at = 0.0
        self._epoch_started = 0.0

    def _should_update(self, current: int, total: int) -> bool:
        now = time.monotonic()
        due = super()._should_update(current, total) or (self.is_enabled and now - self._drawn_at >= self.max_quiet_s)
        if due:
            self._drawn_at = now
        return due

    @property
    def is_enabled(self) -> bool:
        return not self.plain and super().is_enabled

    def _epoch(self, trainer: Any) -> str:
        last = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        return f"epoch {trainer.current_epoch + 1}{last}"

    def on_train_epoch_start(self, trainer: Any, *args: Any) -> None:
        self._epoch_started = self._drawn_at = time.monotonic()
        super().on_train_epoch_start(trainer, *args)
        self.train_progress_bar.set_description(self._epoch(trainer).capitalize())

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.plain:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if time.monotonic() - self._drawn_at >= self.log_every_s:
            self._drawn_at = time.monotonic()
            total = self.total_train_batches
            of = f"/{total}" if isinstance(total, int) else ""
            log.info("%s: batch %d%s%s", self._epoch(trainer), batch_idx + 1, of, self._metrics(trainer, TRAIN))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.plain:  # validation has run: this epoch's val/* are in
            seconds = time.monotonic() - self._epoch_started
            log.info("%s: %s (%.1f s)", self._epoch(trainer), self._metrics(trainer, VAL).lstrip(", "), seconds)

    @staticmethod
    def _metrics(trainer: Any, prefix: str) -> str:
        shown = {k: v for k, v in trainer.callback_metrics.items() if k.startswith(prefix) and v.numel() == 1}
        return "".join(f", {k} {float(v):.4f}" for k, v in sorted(shown.items()))
