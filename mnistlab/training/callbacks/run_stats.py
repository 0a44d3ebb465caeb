"""Training time, epochs and peak memory of a run, for metrics.json."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import lightning as L
import torch

from mnistlab.core.record import EPOCHS, PEAK_MEMORY_MB, TIME_PER_EPOCH_S, TRAIN_TIME_S

STATUS = Path("/proc/self/status")


def reset_peak_rss() -> bool:
    """Start the process's resident-set high-water mark (VmHWM) afresh, so that a job in a sweep measures its
    own peak and not the largest of the jobs before it (Linux: ``5`` into /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_memory(device: torch.device, rss_reset: bool) -> tuple[float, str]:
    """The job's peak memory in MiB and what it measures."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "CUDA memory allocated by tensors, this job"
    if rss_reset and STATUS.is_file():
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10, "resident set of the process, this job (data, model, buffers)"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux
    return peak_mb, "resident set of the process since it started (this job and any before it)"


class RunStats(L.Callback):
    """Times the fit (train and validation loops, not start-up or test) and counts finished epochs."""

    def __init__(self, progress: dict | None = None) -> None:
        self.progress = {} if progress is None else progress  # updated every epoch: what a failed run reached
        self.train_time_s = 0.0
        self.epochs = 0  # finished epochs of the whole run, a resumed one included
        self._epochs_timed = 0
        self._start: float | None = None
        self._rss_reset = reset_peak_rss()  # built at the start of a job, before its data is loaded

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

    def summary(self, device: torch.device) -> dict[str, float | int | str | None]:
        peak_mb, measures = peak_memory(device, self._rss_reset)
        return {
            EPOCHS: self.epochs,
            TRAIN_TIME_S: round(self.train_time_s, 3),
            TIME_PER_EPOCH_S: round(self.train_time_s / self._epochs_timed, 3) if self._epochs_timed else None,
            PEAK_MEMORY_MB: round(peak_mb, 1),
            "peak_memory": measures,
        }
