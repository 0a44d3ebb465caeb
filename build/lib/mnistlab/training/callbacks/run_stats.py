"""Training time, epochs and peak memory of a run, for metrics.json."""

from __future__ import annotations

import resource
import sys
import time

import lightning as L
import torch


def peak_memory_mb(device: torch.device) -> float:
    """CUDA max allocated on a GPU; the process's peak resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


class RunStats(L.Callback):
    """Times the fit (train and validation loops, not start-up or test) and counts finished epochs."""

    def __init__(self, progress: dict | None = None) -> None:
        self.progress = {} if progress is None else progress  # updated every epoch: what a failed run reached
        self.train_time_s = 0.0
        self.epochs = 0  # finished epochs of the whole run, a resumed one included
        self._epochs_timed = 0
        self._start: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epochs_timed += 1
        self.epochs = trainer.current_epoch + 1
        self.progress.update(epochs=self.epochs, global_step=trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is not None:
            self.train_time_s += time.perf_counter() - self._start
            self._start = None

    def summary(self, device: torch.device) -> dict[str, float | int]:
        return {
            "epochs": self.epochs,
            "train_time_s": round(self.train_time_s, 3),
            "time_per_epoch_s": round(self.train_time_s / self._epochs_timed, 3) if self._epochs_timed else None,
            "peak_memory_mb": round(peak_memory_mb(device), 1),
        }
