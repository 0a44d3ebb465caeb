"""A run's record, ``metrics.json``, declared in one place: its format version, the status values, the record
keys, the metric tags (with the objective a sweep ranks by) and the functions that write and read it.

Every writer (training, the search sweeper, the scratch command) and every reader (the sweep callback and
report, the run table, the Python API) goes through this module, so a key or a status is spelled once.
Records of older formats are brought up to date on reading by :mod:`mnistlab.core.compat`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from mnistlab.core.compat import FORMAT, RECORD_VERSION
from mnistlab.core.files import write_json_atomic

METRICS_FILE = "metrics.json"
# the format of the record written today; records without a ``format`` key are version 1


class Status(StrEnum):
    """Where a run stands, as its record says."""

    RUNNING = "running"  # fitting started; a record left at this was killed without a word
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # SIGTERM or Ctrl-C: resumable from its last checkpoint
    PRUNED = "pruned"  # stopped early by the search's pruner
    REQUEUED = "requeued"  # a search trial whose worker died, queued again
    UNREADABLE = "unreadable"  # never written: what a reader returns for a corrupt file
    MISSING = "missing"  # never written: what the Python API returns for a run without a record


# statuses that end a run without it having failed: a sweep does not count them as failures
NOT_FAILURES: tuple[Status, ...] = (Status.PRUNED, Status.REQUEUED)

# the keys of a record besides its metrics
STATUS = "status"
REASON = "reason"  # why a run is not completed
HPARAMS = "hparams"  # the HParams row (core/columns.py)
VAL_CURVE = "val_curve"  # val/acc after each epoch
FINISHED_AT = "finished_at"
WALL_TIME_S = "wall_time_s"
RESUME_WITH = "resume_with"  # the override that resumes an interrupted run

# metric tags: what Lightning logs and what the record holds under the same names
VAL, TEST, TRAIN = "val/", "test/", "train/"  # the prefixes of the three splits' tags
VAL_ACC = "val/acc"
VAL_ACC_BEST = "val/acc_best"
VAL_F1 = "val/f1"
VAL_LOSS = "val/loss"
VAL_MAP = "val/map"
VAL_MAP_50 = "val/map_50"
TEST_ACC = "test/acc"
TEST_F1 = "test/f1"
TEST_LOSS = "test/loss"
TEST_MAP = "test/map"
TEST_MAP_50 = "test/map_50"
TEST_SAMPLES = "test/samples"
TRAIN_ACC = "train/acc"
TRAIN_LOSS = "train/loss"
TRAIN_LOSS_STEP = "train/loss_step"
TRAIN_LR = "train/lr"
BEST_EPOCH = "best_epoch"
EPOCHS = "epochs"
TIME_PER_EPOCH_S = "time_per_epoch_s"
TRAIN_TIME_S = "train_time_s"
PEAK_MEMORY_MB = "peak_memory_mb"
PARAMS = "params"


@dataclass(frozen=True)
class Metric:
    """A metric tag of a run's record. ``title``: its column in the sweep report (None: no column); ``hparams``:
    one of the HParams tab's metric columns; ``optional``: only some models log it, so the report shows its
    column only when some run has it; ``numeric``: a record whose value here is not a number (or null) is
    unreadable, since the reports compute with it."""

    tag: str
    title: str | None = None
    hparams: bool = False
    optional: bool = False
    numeric: bool = False


METRICS: tuple[Metric, ...] = (
    Metric(VAL_ACC_BEST, "val acc best", hparams=True, numeric=True),
    Metric(TEST_ACC, "test acc", hparams=True, numeric=True),
    Metric(TEST_F1, "test F1", hparams=True, numeric=True),
    Metric(TEST_LOSS, "test loss", hparams=True, numeric=True),
    Metric(BEST_EPOCH, "best epoch", numeric=True),
    Metric(EPOCHS, numeric=True),
    Metric(TEST_MAP_50, "test mAP@0.5", optional=True),  # detectors only
    Metric(TEST_MAP, "test mAP@[.5:.95]", optional=True),
    Metric(TIME_PER_EPOCH_S, "s/epoch"),
    Metric(TRAIN_TIME_S, "train s", numeric=True),
    Metric(PEAK_MEMORY_MB, "peak MB"),
    Metric(PARAMS, "params", numeric=True),
)
# the objective: the metric a sweep ranks its runs by, selects on and a search maximizes (validation, never test)
RANK_BY = VAL_ACC_BEST
# the metric the best checkpoint, early stopping and the search's pruner watch each epoch
MONITOR = VAL_ACC
# the metric columns of the HParams tab: logged with placeholder 0 up front, then for real
HPARAM_METRICS: tuple[str, ...] = tuple(m.tag for m in METRICS if m.hparams)
# what reports compute with: numbers (or null) in every readable record
NUMBERS: tuple[str, ...] = tuple(m.tag for m in METRICS if m.numeric)
TITLES: dict[str, str] = {m.tag: m.title for m in METRICS if m.title is not None}
# the scores a test prints and an evaluation reports
TEST_SCORES: tuple[str, ...] = (TEST_ACC, TEST_F1, TEST_LOSS)


def is_completed(record: dict[str, Any] | None) -> bool:
    return (record or {}).get(STATUS) == Status.COMPLETED


def not_completed(status: Status, reason: str, **extra: Any) -> dict[str, Any]:
    """A record that says why a run has no results (a failure, a requeue, a record that cannot be read)."""
    return {STATUS: status, REASON: reason, **extra}


MAX_RECORD_BYTES = 16_000_000  # a record is a few KB; a huge one is not read whole


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """``record`` as the run dir's metrics.json (atomically), stamped with today's format."""
    write_json_atomic(Path(run_dir) / METRICS_FILE, {FORMAT: RECORD_VERSION, **_without(record, FORMAT)})


def read_record(run_dir: Path) -> dict[str, Any] | None:
    """A run's metrics.json, upgraded to today's format; None when there is none; a record with status
    ``unreadable`` when it is corrupt or of an unknown format (so that bookkeeping treats the run as not
    completed and says why)."""
    from mnistlab.core.compat import UnknownFormat, upgrade_record

    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        if path.stat().st_size > MAX_RECORD_BYTES:
            return not_completed(Status.UNREADABLE, f"{path} is larger than a run record can be")
        record = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        return not_completed(Status.UNREADABLE, f"{path} is not readable JSON ({type(err).__name__})")
    if not isinstance(record, dict) or not isinstance(record.get(HPARAMS, {}), dict):
        return not_completed(Status.UNREADABLE, f"{path} does not hold a run record")
    try:
        record = upgrade_record(record)
    except UnknownFormat as err:
        return not_completed(Status.UNREADABLE, f"{path}: {err}")
    for key in NUMBERS:  # NaN or Infinity (valid to Python's json) is no score: never ranked first
        if isinstance(record.get(key), float) and not math.isfinite(record[key]):
            record[key] = None
    bad = next((k for k in NUMBERS if record.get(k) is not None and not isinstance(record[k], int | float)), None)
    if bad or isinstance(record.get(STATUS), bool) or not isinstance(record.get(STATUS, ""), str):
        return not_completed(Status.UNREADABLE, f"{path} holds a {bad or STATUS} that is not valid")
    return record


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}
