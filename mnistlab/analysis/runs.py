"""Run dirs read back as data: each job's metrics.json (or a failure record) and its overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistlab.core.config import read_overrides
from mnistlab.core.errors import ConfigError
from mnistlab.core.record import Status, not_completed, read_record


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job dirs of a sweep: folders with a ``.hydra`` inside, sorted by name."""
    return sorted(
        (p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").is_dir()), key=lambda p: p.name
    )


def sweep_statuses(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """Job dir name → its metrics.json (a job that wrote none counts as failed)."""
    return {
        job.name: read_record(job) or not_completed(Status.FAILED, "no metrics.json was written")
        for job in job_dirs(sweep_dir)
    }


def load_runs(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job of the sweep: its dir name, metrics.json (or a failure record) and its overrides (as text)."""
    runs = []
    for name, metrics in sweep_statuses(sweep_dir).items():
        try:
            overrides = read_overrides(Path(sweep_dir) / name)
        except ConfigError:
            overrides = []  # a job dir without readable overrides is still reported, by its record
        runs.append({"job": name, "metrics": metrics, "overrides": overrides})
    return runs
