"""What a sweep varies: the keys its command line (or its preset's ``hydra.sweeper.params``) sweeps, with their
values. Written once per sweep into ``<sweep dir>/sweep.json`` (data: names and values, never code), read by its
jobs (TensorBoard run names, the HParams row) and by the sweep report (its factors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mnistlab.core.columns import HPARAM_OF
from mnistlab.core.files import write_json_atomic
from mnistlab.core.omegaconf_compat import register_resolver
from mnistlab.core.readers import read_json

SWEEP_FILE = "sweep.json"
NOT_FACTORS = ("hydra.", "hydra/", "paths.", "skip_completed")  # where a sweep runs, not what it compares


def hparam_name(key: str) -> str:
    """The HParams column an override key sets (``optim.lr`` → ``lr``); a key without a column of its own names
    itself."""
    return HPARAM_OF.get(key, key)


def _values(override: Any) -> list[Any]:
    from hydra.core.override_parser.types import IntervalSweep

    sweep = override.value()
    if isinstance(sweep, IntervalSweep):  # a searched range: continuous, no fixed levels
        assert sweep.start is not None and sweep.end is not None  # interval(start, end) needs both
        return [float(sweep.start), float(sweep.end)]
    return list(override.sweep_iterator())


def swept(overrides: list[str], sweeper_params: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """Override key → its swept values, for the overrides (and sweeper params) that sweep (``a=1,2``,
    ``range(…)``, ``choice(…)``, ``interval(…)``), in command-line order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    result: dict[str, list[Any]] = {}
    texts = list(overrides)
    given = {o.partition("=")[0].lstrip("+~") for o in overrides}  # the command line wins over a preset's params
    for key, value in (sweeper_params or {}).items():
        if key in given:
            continue
        if isinstance(value, dict):  # a search space entry: {type: categorical, choices} or {type: float, low, high}
            if not key.startswith(NOT_FACTORS):
                result[key] = list(value.get("choices") or [value.get("low"), value.get("high")])
        else:
            texts.append(f"{key}={value}")
    for override in OverridesParser.create().parse_overrides(texts):
        key = override.key_or_group
        if override.is_sweep_override() and not key.startswith(NOT_FACTORS):
            result[key] = _values(override)
    return result


def searched_scales(overrides: list[str], sweeper_params: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Override key → ``{"type": "float"|"int", "log": bool}`` for the keys searched over a range (a search space
    entry or ``interval(…)``): continuous values, each run its own, which the report plots instead of comparing
    them as levels."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    scales: dict[str, dict[str, Any]] = {}
    given = {o.partition("=")[0].lstrip("+~") for o in overrides}
    for key, value in (sweeper_params or {}).items():
        if key not in given and isinstance(value, dict) and value.get("type") in ("float", "int"):
            scales[key] = {"type": str(value["type"]), "log": bool(value.get("log", False))}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        sweep = override.value() if override.is_sweep_override() else None
        if isinstance(sweep, IntervalSweep):
            scales[override.key_or_group] = {"type": "float", "log": "log" in (sweep.tags or set())}
    return scales


def write_sweep_file(
    sweep_dir: Path, overrides: list[str], sweeper_params: dict[str, Any] | None, origin: dict[str, Any] | None = None
) -> dict:
    """sweep.json: the swept keys and values, the scales of searched ones, and ``origin`` (what made the sweep,
    ``sweep_origin``), which a later sweep into the same dir must match."""
    factors = swept(overrides, sweeper_params)
    scales = {k: v for k, v in searched_scales(overrides, sweeper_params).items() if k in factors}
    data: dict[str, Any] = {"swept": {k: [_plain(v) for v in vs] for k, vs in factors.items()}}
    if scales:
        data["searched"] = scales
    if origin is not None:
        data["origin"] = origin
    target = Path(sweep_dir) / SWEEP_FILE
    if not target.exists():
        _WRITTEN_FRESH.add(target.resolve())
    write_json_atomic(target, data)
    return factors


_WRITTEN_FRESH: set[Path] = set()  # sweep.json files this process made where there was none


def withdraw_sweep_file(sweep_dir: Path) -> None:
    """A sweep refused after its sweep.json was written (a study found to ask another question): the file goes
    again if this process made it, so that the dir stays the earlier search's, to be continued as it was."""
    target = (Path(sweep_dir) / SWEEP_FILE).resolve()
    if target in _WRITTEN_FRESH:
        target.unlink(missing_ok=True)
        _WRITTEN_FRESH.discard(target)


def _plain(value: Any) -> Any:
    return value if isinstance(value, bool | int | float | str) or value is None else str(value)


def _read_sweep_file(sweep_dir: Path) -> Any:
    """sweep.json's content, read with the records' size cap; None when it is missing or not readable."""
    try:
        return read_json(Path(sweep_dir) / SWEEP_FILE)
    except (OSError, ValueError):  # RecordError is a ValueError
        return None


def read_swept(sweep_dir: Path) -> dict[str, list[Any]] | None:
    """The sweep's swept keys and values from its sweep.json; None when there is none or it is not readable."""
    data = _read_sweep_file(sweep_dir)
    factors = data.get("swept") if isinstance(data, dict) else None
    if not isinstance(factors, dict) or not all(isinstance(k, str) and isinstance(v, list) for k, v in factors.items()):
        return None
    return factors


# overrides that say how or where a sweep runs, not what it asks: they may change when it is continued
NOT_ORIGIN = (
    "hydra.sweep.dir",
    "skip_completed",
    "hydra/launcher",
    "hydra.launcher",
    "hydra.sweeper.n_trials",
    "hydra.sweeper.n_jobs",
    "hydra.sweeper.max_failures",
    "hydra.sweeper.storage",
    "hydra.verbose",
    "speed.",
)


def sweep_origin(overrides: list[str], sweeper: dict[str, Any]) -> dict[str, Any]:
    """What makes a sweep the sweep it is: its command line's overrides (less how and where it runs) and, for a
    search, its objective, direction and space; for a grid, its preset's params."""
    kept = sorted(o for o in overrides if not o.partition("=")[0].lstrip("+~").startswith(NOT_ORIGIN))
    origin: dict[str, Any] = {"overrides": kept, "params": sweeper.get("params") or {}}
    if "objective" in sweeper:
        origin.update(objective=sweeper.get("objective"), direction=sweeper.get("direction"))
    return json.loads(json.dumps(origin, default=str))  # plain JSON values, as read back


def read_origin(sweep_dir: Path) -> dict[str, Any] | None:
    """The ``origin`` sweep.json recorded, or None (no sweep.json, or one written before origins were kept)."""
    data = _read_sweep_file(sweep_dir)
    origin = data.get("origin") if isinstance(data, dict) else None
    return origin if isinstance(origin, dict) else None


def read_searched(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """The keys a sweep searched over a range, with their type and scale (``searched_scales``); {} when none."""
    data = _read_sweep_file(sweep_dir)
    scales = data.get("searched") if isinstance(data, dict) else None
    if not isinstance(scales, dict):
        return {}
    return {
        k: {"type": str(v.get("type")), "log": v.get("log") is True}
        for k, v in scales.items()
        if isinstance(k, str) and isinstance(v, dict)
    }


def run_label(job_overrides: list[str], swept_keys: list[str]) -> str:
    """A job's swept choices as ``optim=adam,model.norm=batch`` (its TensorBoard run name and its legend)."""
    chosen = {}
    for override in job_overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if sep and key in swept_keys:
            chosen[key] = _short(value)
    label = ",".join(f"{key}={chosen[key]}" for key in swept_keys if key in chosen)
    return label.replace("/", "_")[:150]


def _short(value: str) -> str:
    """A searched float as 4 significant digits (0.0034369211930110493 → 0.003437); anything else as given."""
    if "." in value or "e" in value.lower():
        try:
            return f"{float(value):.4g}"
        except ValueError:
            pass
    return value


def current_run_label() -> str:
    """The TensorBoard run (a folder of the run dir) of the job being composed: its swept choices in a sweep;
    in a single run the run dir itself (""), or the folder a resumed sweep job already writes to."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return ""
    hydra = HydraConfig.get()
    if hydra.mode == RunMode.MULTIRUN:
        return run_label(list(hydra.overrides.task), list(read_swept(Path(hydra.sweep.dir)) or {}))
    run_dir = Path(hydra.runtime.output_dir)
    if run_dir.is_dir() and not any(run_dir.glob("events.out.tfevents.*")):
        earlier = [d.name for d in run_dir.iterdir() if d.is_dir() and any(d.glob("events.out.tfevents.*"))]
        if len(earlier) == 1:
            return earlier[0]
    return ""


def current_run_name() -> str | None:
    """The name of the job being composed in a tracker that holds many runs (logger.mlflow.run_name): its swept
    choices in a sweep (``optim=sgd,seed=1``; TensorBoard's run name too), else its run dir's name
    (``09-30-00-123456``; a sweep job whose choices are unknown: ``<sweep dir name>/<job>``); None outside a
    Hydra job (the tracker picks one)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    label = current_run_label()
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    if label:  # a resumed sweep job, run on its own, keeps its choices too
        return label
    return f"{Path(hydra.sweep.dir).name}/{run_dir.name}" if hydra.mode == RunMode.MULTIRUN else run_dir.name


# the logger configs name their runs through these (logger.tensorboard.version, logger.mlflow.run_name)
for _name, _resolver in (("mnistlab_run_label", current_run_label), ("mnistlab_run_name", current_run_name)):
    register_resolver(_name, _resolver)
