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


class SweepSummary(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the sweep dir must exist before the sweeper opens anything in it (Optuna's SQLite study)
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        try:
            from mnistlab.analysis.sweep_report import write_report

            log.info("sweep report: %s", write_report(sweep_dir))
        except Exception:  # the report must never cost the sweep its exit status
            log.exception("the sweep report could not be written")
        statuses = sweep_statuses(sweep_dir)
        failed = {name: m for name, m in statuses.items() if m.get("status") != "completed"}
        for name, metrics in failed.items():
            log.error("job %s failed: %s", name, metrics.get("reason", metrics.get("status")))
        completed = len(statuses) - len(failed)
        print(f"{completed} of {len(statuses)} runs completed, {len(failed)} failed; in {sweep_dir}", flush=True)
        if failed:
            raise SystemExit(1)
