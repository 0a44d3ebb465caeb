"""TensorBoard and CSV as mnistlab logs to them.

CSV: metrics.csv goes into the run dir itself, which Hydra has already filled (.hydra/, train.log) when the
logger starts, so Lightning's "Experiment logs directory … exists and is not empty" warning came with every new
run. It is given only when what it warns of is true: a metrics.csv of an earlier run is there (and is replaced).

TensorBoard: the scalars a user looks at first open first.

TensorBoard's Time Series opens the first two tag groups in alphabetical order. Lightning adds an ``epoch``
scalar to every log call, which made ``epoch`` (and ``lr``) those two groups; without it, and with the learning
rate under ``train/``, a run in progress opens ``train`` and ``val`` (``test`` joins when the run is tested).
The epoch of every point is still in metrics.csv.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _RunDirWriter(ExperimentWriter):
    """Lightning's CSV writer, which warns only when the run dir holds a metrics.csv (the one file it deletes),
    not because Hydra's files are there."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger writing through :class:`_RunDirWriter`."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _RunDirWriter(log_dir=self.log_dir)
        return self._experiment  # type: ignore[return-value]  # Lightning types it as fabric's writer, our base


class TensorBoardLogger(LightningTensorBoardLogger):
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)
