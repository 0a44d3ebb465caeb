"""Runs read back for comparison: every run under a folder as one table row (``runs``), and two runs side by side
(``diff``): the config keys, provenance and packages that differ, and their metrics.

Everything is read as data (``core.readers``): a run dir from another machine, or a hostile one, is only text.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path
from typing import Any

from mnistlab.analysis.formatting import format_number
from mnistlab.core import provenance
from mnistlab.core.errors import ConfigError
from mnistlab.core.readers import RecordError, flatten, read_yaml
from mnistlab.core.record import HPARAMS, NUMBERS, STATUS, TEST_ACC, is_completed, read_record

METRICS = NUMBERS  # the metrics a readable record holds as numbers, as the sweep report reads them
REPLICATE_KEYS = ("seed", "data.fold")
NOT_COMPARED = ("paths.", "hydra.")  # where a run wrote, not what it did
PROVENANCE_COLUMNS = {
    "mnistlab": "mnistlab",
    "git.commit": "commit",
    "git.dirty": "dirty",
    "machine.torch": "torch",
    "machine.lightning": "lightning",
    "machine.host": "host",
    "machine.device": "device",
    "data.fingerprint": "data_fingerprint",
}


def run_dirs(root: Path) -> list[Path]:
    """Every run dir under ``root`` (a folder with ``.hydra/`` and a record), sorted; links are not followed."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    found = []
    for folder, subdirs, files in os.walk(root):
        here = Path(folder)
        if ".hydra" in subdirs and ({"metrics.json", provenance.PROVENANCE_FILE} & set(files)):
            found.append(here)
        subdirs[:] = [
            d for d in subdirs if d not in (".hydra", "checkpoints", "before-resume") and not d.startswith(".")
        ]
    return sorted(found)


def _scalar(value: Any) -> bool:
    return isinstance(value, bool | int | float | str) or value is None


def run_row(run_dir: Path) -> dict[str, Any]:
    """One run as a flat row: where it is, its status, hparams, metrics and the main provenance fields."""
    run_dir = Path(run_dir)
    metrics = read_record(run_dir) or {}
    sweep = run_dir.parent if (run_dir.parent / "sweep.json").is_file() else None
    row: dict[str, Any] = {
        "run_dir": str(run_dir),
        "sweep": str(sweep) if sweep else None,
        "job": run_dir.name if sweep else None,
        "status": metrics.get(STATUS, "no record"),
    }
    hparams = metrics.get(HPARAMS)
    if isinstance(hparams, dict):
        row.update({k: v for k, v in hparams.items() if _scalar(v) and k not in row})
    row.update({k: metrics.get(k) for k in METRICS})
    record = flatten(provenance.read(run_dir) or {})
    row.update({column: record.get(key) for key, column in PROVENANCE_COLUMNS.items()})
    return row


def runs(path: Path | str, frame: bool = True) -> Any:
    """Every run under ``path`` (any number of sweeps and single runs), one row each: a pandas DataFrame, or
    with ``frame=False`` a list of dicts."""
    rows = [run_row(d) for d in run_dirs(Path(path))]
    if not frame:
        return rows
    import pandas as pd

    return pd.DataFrame(rows)


def _config(run_dir: Path) -> dict[str, Any]:
    try:
        data = read_yaml(Path(run_dir) / ".hydra" / "config.yaml")
    except RecordError:
        return {}
    return {k: v for k, v in flatten(data if isinstance(data, dict) else {}).items() if not k.startswith(NOT_COMPARED)}


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    missing = object()
    keys = sorted(set(a) | set(b))
    pairs = [(k, a.get(k, missing), b.get(k, missing)) for k in keys]
    return [(k, None if x is missing else x, None if y is missing else y) for k, x, y in pairs if repr(x) != repr(y)]


def _replicates(run_dir: Path) -> set[Path]:
    """The completed runs of ``run_dir``'s sweep whose config (``.hydra/config.yaml``) is the same but for the
    seed or fold, the run itself included: what seed noise looks like for this configuration."""
    if not (run_dir.parent / "sweep.json").is_file():
        return set()
    strip = lambda config: {k: v for k, v in config.items() if k not in REPLICATE_KEYS}  # noqa: E731
    mine = strip(_config(run_dir))
    if not mine:
        return set()
    return {
        other
        for other in run_dirs(run_dir.parent)
        if is_completed(read_record(other)) and strip(_config(other)) == mine
    }


def _noise(a: Path, b: Path, metric: str, difference: float | None) -> str:
    """Whether ``difference`` is within the seed noise measured by replicates of either run's configuration."""
    if difference is None:
        return f"{metric}: not recorded by both runs."
    groups = []
    for group in {frozenset(_replicates(a)), frozenset(_replicates(b))}:
        values = [float(v) for r in group if isinstance(v := (read_record(r) or {}).get(metric), int | float)]
        if len(values) >= 2:
            groups.append(values)
    if not groups:
        return (
            f"{metric} differs by {difference:+.4g}; neither run has replicates (other seeds of its configuration in "
            "its sweep), so whether that is more than seed noise cannot be told."
        )
    # pooled within-configuration sd; the difference of two single runs has sd √2 times that
    dof = sum(len(g) - 1 for g in groups)
    sd = math.sqrt(sum(statistics.variance(g) * (len(g) - 1) for g in groups) / dof)
    count = sum(len(g) for g in groups)
    if sd == 0:
        return (
            f"{metric} differs by {difference:+.4g}; its {count} replicate runs agree exactly, which gives no "
            "estimate of the seed noise: whether the difference is more than noise cannot be told."
        )
    bound = 2 * math.sqrt(2) * sd
    verdict = "within" if abs(difference) <= bound else "beyond"
    return (
        f"{metric} differs by {difference:+.4g}: {verdict} seed noise (seed sd {sd:.4g} from "
        f"{count} replicate runs; two single runs differ by up to ±{bound:.4g} about 95 % of "
        "the time)."
    )


def diff(a: Path | str, b: Path | str, metric: str = TEST_ACC) -> dict[str, Any]:
    """Two runs side by side: the config keys that differ, the provenance that differs (commit, dirty, versions,
    host, device, data), the packages that differ, both runs' metrics, and a line on seed noise."""
    a, b = Path(a), Path(b)
    for run in (a, b):
        if not (run / ".hydra").is_dir():
            raise ConfigError(f"{run} is not a run dir (no .hydra/ in it)")
    prov_a, prov_b = provenance.read(a) or {}, provenance.read(b) or {}
    ignore = ("command", "cwd", "packages_file", "git.patch_file")
    flat_a = {k: v for k, v in flatten(prov_a).items() if k not in ignore}
    flat_b = {k: v for k, v in flatten(prov_b).items() if k not in ignore}
    metrics_a, metrics_b = read_record(a) or {}, read_record(b) or {}
    value_a, value_b = metrics_a.get(metric), metrics_b.get(metric)
    difference = None
    if isinstance(value_a, int | float) and isinstance(value_b, int | float):
        difference = float(value_b) - float(value_a)
    return {
        "runs": [str(a), str(b)],
        "config": _differences(_config(a), _config(b)),
        "provenance": _differences(flat_a, flat_b) if prov_a and prov_b else [],
        "packages": _differences(provenance.read_packages(a), provenance.read_packages(b)),
        "missing_provenance": [str(r) for r, p in ((a, prov_a), (b, prov_b)) if not p],
        "metrics": [(k, metrics_a.get(k), metrics_b.get(k)) for k in METRICS],
        "commands": [prov_a.get("command"), prov_b.get("command")],
        "noise": _noise(a, b, metric, difference),
    }


def format_diff(result: dict[str, Any]) -> str:
    """The diff as text for the terminal: A is the first run, B the second."""
    a, b = result["runs"]
    lines = [f"A: {a}", f"B: {b}"]
    for title, key in (("config", "config"), ("provenance", "provenance"), ("packages", "packages")):
        rows = result[key]
        lines += ["", f"{title} that differs:" if rows else f"{title}: the same"]
        lines += [f"  {name}: {format_number(x)} → {format_number(y)}" for name, x, y in rows]
    for run in result["missing_provenance"]:
        lines.append(f"  (no provenance recorded in {run}: made by an mnistlab that did not record it)")
    lines += ["", "metrics (A → B):"]
    shown = [(name, x, y) for name, x, y in result["metrics"] if x is not None or y is not None]
    lines += [f"  {name}: {format_number(x)} → {format_number(y)}" for name, x, y in shown]
    lines += ["", result["noise"]]
    return "\n".join(lines)
