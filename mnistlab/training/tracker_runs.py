"""The runs this process holds open in a tracker (W&B, trackio), and the Hydra callback that finishes them when
their job ends.

Lightning calls a logger's ``finalize("success")`` after the LR finder, after fit and after test, so a logger
cannot tell the last call; Lightning's W&B logger never finishes its run at all, and the next job of a sweep
process then logged into the same W&B run. Here a job's tracker run is finished by :class:`FinishTrackerRuns`
(configured in conf/hydra/default.yaml) once the job is over, in whatever process ran it (a joblib worker too),
with the job's status. Imports nothing heavy: Hydra loads it at start-up.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class TrackerRun(Protocol):
    """A logger holding an open run: ``finish(ok)`` closes it once (``ok``: the job completed)."""

    def finish(self, ok: bool) -> None: ...


_open: list[TrackerRun] = []


def opened(logger: TrackerRun) -> None:
    """``logger`` has started its run: it is finished at the end of the job (or before the next run starts)."""
    if logger not in _open:
        _open.append(logger)


def closed(logger: TrackerRun) -> None:
    if logger in _open:
        _open.remove(logger)


def finish_open_runs(ok: bool) -> None:
    """Finish every run still open in this process; a tracker that fails to finish is logged, not raised (the
    job's own results are already written)."""
    while _open:
        logger = _open.pop()
        try:
            logger.finish(ok)
        except Exception as err:  # a tracker's failure must not fail a finished job
            log.warning("could not finish the %s run: %s", type(logger).__name__, err)


def finish_leftovers(logger: TrackerRun) -> None:
    """Before ``logger`` starts its run: finish the runs of the same tracker still open from an earlier job
    (its end was missed), as completed; those of other trackers in the same job stay open."""
    for other in [o for o in _open if type(o) is type(logger) and o is not logger]:
        closed(other)
        other.finish(True)


def job_completed(run_dir: Path) -> bool:
    """The job's metrics.json says completed (a failed sweep job returns normally to Hydra)."""
    from mnistlab.core.record import STATUS, Status, read_record

    record = read_record(run_dir)
    return record is not None and record.get(STATUS) == Status.COMPLETED


class FinishTrackerRuns(Callback):
    """Finishes the tracker runs a job opened, at the end of that job, marked failed unless it completed."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _open:
            return
        run_dir = Path(str(config.hydra.runtime.output_dir))
        finish_open_runs(job_completed(run_dir))


def sweep_group() -> str | None:
    """The group of a sweep's runs in a tracker: its sweep dir, relative to the directory the command runs from
    when inside it (``multirun/2026-12-05/21-30-00-123456``); None for a single run or outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None
    sweep_dir = Path(str(hydra.sweep.dir)).absolute()
    cwd = Path.cwd().absolute()
    return str(sweep_dir.relative_to(cwd)) if sweep_dir.is_relative_to(cwd) else str(sweep_dir)


# where W&B keeps an API key (`wandb login` writes it to ~/.netrc, or $NETRC)
WANDB_DEFAULT_HOST = "https://api.wandb.ai"


def wandb_logged_in() -> bool:
    """An API key for W&B's server (``WANDB_BASE_URL``, else api.wandb.ai) in the environment or in the netrc
    file ``wandb login`` writes."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or WANDB_DEFAULT_HOST).hostname or ""
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return path.is_file() and netrc.netrc(str(path)).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_mode(mode: str | None) -> str | None:
    """The ``mode`` given to ``wandb.init``: ``mode`` when set (logger.wandb.mode=online|offline|disabled);
    else None (W&B's own choice) when ``WANDB_MODE`` is set or the user has logged in (``WANDB_API_KEY`` or
    ``wandb login``); else ``offline``: nothing leaves the machine unless the user asked for it."""
    if mode:
        return mode
    if os.environ.get("WANDB_MODE") or wandb_logged_in():
        return None
    return "offline"
