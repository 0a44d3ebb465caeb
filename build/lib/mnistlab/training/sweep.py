"""Hydra callback: when a multirun ends, count the failed jobs and say so in the exit status.

Hydra's basic launcher carries on after a failed job, but nothing then tells the user how many failed.
Each job records ``status`` in its metrics.json; this reads them back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnistlab.analysis.runs import sweep_statuses

log = logging.getLogger("mnistlab.sweep")


def summarize(sweep_dir: Path) -> int:
    """Write the sweep report and print who failed and how many completed; returns the number not completed.
    Called when a multirun ends, and when a signal interrupts one."""
    try:
        from mnistlab.analysis.sweep_report import write_report

        log.info("sweep report: %s", write_report(sweep_dir))
    except Exception:  # the report must never cost the sweep its exit status
        log.exception("the sweep report could not be written")
    statuses = sweep_statuses(sweep_dir)
    failed = {name: m for name, m in statuses.items() if m.get("status") != "completed"}
    for name, metrics in failed.items():
        log.error("job %s %s: %s", name, metrics.get("status"), metrics.get("reason", ""))
    completed = len(statuses) - len(failed)
    print(f"{completed} of {len(statuses)} runs completed, {len(failed)} failed; in {sweep_dir}", flush=True)
    return len(failed)


def close_sweep(sweep_dir: Path) -> int:
    """``summarize``, then let go of the sweep dir; returns the number of runs not completed."""
    from mnistlab.core.files import release_dir

    failed = summarize(sweep_dir)
    release_dir(sweep_dir)
    return failed


class SweepSummary(Callback):
    """Holds the sweep dir for the sweep (a second sweep into it is refused, unless skip_completed=true shares
    it by design), and closes the books at the end: the report, the failures, a non-zero exit status."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the sweep dir must exist before the sweeper opens anything in it (Optuna's SQLite study)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if not config.get("skip_completed"):
            from mnistlab.core.errors import BusyError, exit_with
            from mnistlab.core.files import acquire_dir

            try:
                acquire_dir(sweep_dir)
            except BusyError as busy:
                exit_with(busy)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if sweep_dir.is_dir() and close_sweep(sweep_dir):
            raise SystemExit(1)
