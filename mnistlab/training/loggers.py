"""TensorBoard as mnistlab logs to it: the scalars a user looks at first open first.

TensorBoard's Time Series opens the first two tag groups in alphabetical order. Lightning adds an ``epoch``
scalar to every log call, which made ``epoch`` (and ``lr``) those two groups; without it, and with the learning
rate under ``train/``, a run in progress opens ``train`` and ``val`` (``test`` joins when the run is tested).
The epoch of every point is still in metrics.csv.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger


class TensorBoardLogger(LightningTensorBoardLogger):
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)
