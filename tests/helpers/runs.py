"""Reading what a run recorded."""

from __future__ import annotations

import json
from pathlib import Path

TIMES = {"train_time_s", "time_per_epoch_s", "test_time_s", "wall_time_s", "finished_at", "peak_memory_mb"}


def metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def without_times(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMES}
