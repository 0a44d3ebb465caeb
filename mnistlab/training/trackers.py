"""``logger=wandb`` and ``logger=trackio``: the run's HParams row and metrics in Weights & Biases or trackio, beside
TensorBoard and CSV.

Both receive what the other loggers receive (the HParams row from :mod:`mnistlab.training.hparams`, every
logged metric), a run name from the job's swept choices, one group per sweep (its dir) and the run dir in their
config. Both stay on the machine unless the user asks otherwise: W&B runs offline (files in the run dir, ready
for ``wandb sync``) unless the user has logged in or set ``WANDB_MODE``; trackio writes its local SQLite store
(no server, no dashboard started). Each run is finished when its job ends (:mod:`.tracker_runs`). Imported only
when one of them is chosen: wandb and trackio are imported when the run starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.logger import Logger, rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from mnistlab.core.errors import ConfigError
from mnistlab.core.extras import require
from mnistlab.core.record import Status
from mnistlab.training import tracker_runs

# what Lightning passes to Logger.finalize() after an exception (the same word as the record's status)
LIGHTNING_FAILED = str(Status.FAILED)

log = logging.getLogger(__name__)


def _plain(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments from the config as plain dicts and lists (``settings: {quiet: true}``,
    ``+logger.wandb.tags=[a]``): the trackers check for ``dict``, not OmegaConf's containers."""
    from omegaconf import OmegaConf

    return {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in kwargs.items()}


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger with mnistlab's defaults: ``mode`` from :func:`tracker_runs.wandb_mode`
    (offline unless the user logged in or set ``WANDB_MODE``), ``group`` the sweep's dir (None: derived; a
    single run has none), ``run_dir`` in the run's config, and the run finished when its job ends (Lightning's
    logger leaves it open, and the next job of a sweep process logged into it)."""

    def __init__(
        self,
        project: str = "mnistlab",
        name: str | None = None,
        save_dir: str = ".",
        group: str | None = None,
        mode: str | None = None,
        run_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        require("logger=wandb", "wandb")
        Path(save_dir).mkdir(parents=True, exist_ok=True)  # wandb falls back to a temporary dir when it is missing
        kwargs = _plain(kwargs)
        config = {**(kwargs.pop("config", None) or {}), **({"run_dir": run_dir} if run_dir else {})}
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            group=group or tracker_runs.sweep_group(),
            mode=tracker_runs.wandb_mode(mode),
            config=config or None,
            **kwargs,
        )
        self._finished = False
        if self._wandb_init.get("anonymous") is None:  # Lightning passes None, which W&B warns has no effect
            self._wandb_init.pop("anonymous", None)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is None:
            tracker_runs.finish_leftovers(self)
            experiment = LightningWandbLogger.experiment.fget(self)  # type: ignore[attr-defined]
            tracker_runs.opened(self)
            if getattr(experiment, "offline", False):
                settings = getattr(experiment, "settings", None)
                where = getattr(experiment, "sync_dir", None) or getattr(settings, "sync_dir", None) or self.save_dir
                log.info("W&B run %s offline in %s; upload it later: wandb sync %s", experiment.name, where, where)
            elif getattr(experiment, "url", None):
                log.info("W&B run %s: %s", experiment.name, experiment.url)
            return experiment
        return self._experiment

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)  # TensorBoard's metrics

    def finalize(self, status: str) -> None:
        super().finalize(status)
        if status == LIGHTNING_FAILED:  # nothing follows a failure: the run is marked failed at once
            self.finish(ok=False)

    def finish(self, ok: bool) -> None:
        """Finish the W&B run (exit code 0 when the job completed, else 1); later calls do nothing."""
        tracker_runs.closed(self)
        if self._experiment is not None and not self._finished and rank_zero_only.rank == 0:  # type: ignore[attr-defined]
            self._finished = True
            self._experiment.finish(exit_code=0 if ok else 1)


def _import_trackio(store: Path) -> Any:
    """trackio, its local store at ``store``: trackio reads ``TRACKIO_DIR`` once, when it is first imported."""
    import sys

    if "trackio" not in sys.modules:
        os.environ["TRACKIO_DIR"] = str(store)
    import trackio
    from trackio import utils

    if Path(utils.TRACKIO_DIR).resolve() != store.resolve():
        raise ConfigError(
            f"logger.trackio.dir={store}, but trackio already writes to {utils.TRACKIO_DIR} in this process (it "
            "reads its dir once, when imported): use one dir per process, or run from a new process"
        )
    return trackio


class TrackioLogger(Logger):
    """Logs to trackio's local store (``dir``/<project>.db, SQLite), like ``trackio.init``/``log``/``finish``.

    trackio has no Lightning logger. Its ``log`` stores the run's config with the run's first metrics only, so
    the HParams row given before the run starts is passed to ``trackio.init``. ``space_id``/``server_url`` (or
    trackio's ``TRACKIO_SPACE_ID``/``TRACKIO_SERVER_URL``) send the run elsewhere; nothing else leaves the machine.
    """

    def __init__(
        self,
        project: str = "mnistlab",
        name: str | None = None,
        dir: str = "trackio",
        group: str | None = None,
        run_dir: str | None = None,
        **init_kwargs: Any,
    ) -> None:
        require("logger=trackio", "trackio")
        super().__init__()
        self._project = project
        self._name = name
        self._dir = Path(dir).expanduser().absolute()
        self._group = group or tracker_runs.sweep_group()
        self._config: dict[str, Any] = {"run_dir": run_dir} if run_dir else {}
        self._init_kwargs = {k: v for k, v in _plain(init_kwargs).items() if v is not None}  # None: trackio's default
        self._experiment: Any = None
        self._finished = False

    @property
    def name(self) -> str:
        return self._project

    @property
    def version(self) -> str | None:
        return self._experiment.name if self._experiment is not None else self._name

    @property
    def save_dir(self) -> str:
        return str(self._dir)

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The trackio Run, started on first use."""
        if self._experiment is None:
            from mnistlab.core.quiet import TRACKIO_PRINTS, dropped_prints

            tracker_runs.finish_leftovers(self)
            self._dir.mkdir(parents=True, exist_ok=True)
            trackio = _import_trackio(self._dir)
            with dropped_prints(TRACKIO_PRINTS):
                self._experiment = trackio.init(
                    project=self._project,
                    name=self._name,
                    group=self._group,
                    config=dict(self._config),
                    embed=False,
                    **self._init_kwargs,
                )
            tracker_runs.opened(self)
            log.info(
                "trackio run %s in %s (TRACKIO_DIR=%s trackio show --project %s)",
                self._experiment.name,
                self._dir / f"{self._project}.db",
                self._dir,
                self._project,
            )
        return self._experiment

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        from lightning.fabric.utilities.logger import _convert_params, _sanitize_callable_params

        params = _sanitize_callable_params(_convert_params(params))
        self._config.update(params)
        run = self.experiment
        run.config.update(params)
        if getattr(run, "_config_logged", False):  # trackio stores the config with the next metrics only
            run._config_logged = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.experiment.log({k: float(v) for k, v in metrics.items() if k != "epoch"}, step=step)

    def finalize(self, status: str) -> None:
        if status == LIGHTNING_FAILED:  # nothing follows a failure
            self.finish(ok=False)

    def finish(self, ok: bool) -> None:
        """Write what is queued and stop trackio's threads; later calls do nothing. trackio keeps no status."""
        tracker_runs.closed(self)
        if self._experiment is not None and not self._finished:
            from mnistlab.core.quiet import TRACKIO_PRINTS, dropped_prints

            self._finished = True
            with dropped_prints(TRACKIO_PRINTS):
                self._experiment.finish()
            _forget_current_run(self._experiment)


def _forget_current_run(run: Any) -> None:
    """trackio's current run is no longer ``run``: its exit handler would finish it a second time."""
    import contextlib

    with contextlib.suppress(ImportError, AttributeError, LookupError):
        from trackio import context_vars

        if context_vars.current_run.get() is run:
            context_vars.current_run.set(None)
