"""What a sweep compared, read from its runs and its sweep.json: the factors it varied, the values that came along
with one of them, the replicates (seed, fold), and which factors were searched over a range (continuous) rather
than set to a few levels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistlab.analysis.formatting import format_number
from mnistlab.core.factors import hparam_name, read_searched, read_swept
from mnistlab.core.record import HPARAMS, RANK_BY, STATUS, Status

MAX_LEVELS = 8  # a factor with more distinct values (a searched lr, say) is continuous: no main-effect bars
REPLICATES = ("seed", "fold")


def varying_factors(runs: list[dict[str, Any]]) -> list[str]:
    """HParams keys whose value differs between runs, in the order train.py logs them."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run["metrics"].get(HPARAMS, {}) if k not in keys]
    return [
        k
        for k in keys
        if len({repr(r["metrics"].get(HPARAMS, {}).get(k)) for r in runs if r["metrics"].get(HPARAMS)}) > 1
    ]


def completed(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs that finished with a score to rank by: the only ones the statistics use."""
    return [r for r in runs if r["metrics"].get(STATUS) == Status.COMPLETED and r["metrics"].get(RANK_BY) is not None]


class Factors:
    """What a sweep compared: the factors it varied on the command line or in its preset, the values that came
    along with one of them (lr with optim), and the replicates (seed, fold).

    A factor's level is what the user swept: when the runs' records name fewer levels than their command lines
    (records that stored a preset's dataset name, ``mnist`` for both ``data=mnist`` and ``data=mnist_aug``), the
    levels are taken from the command lines instead, in ``runs`` itself, and ``relevelled`` names them.
    Factors searched over a range (``continuous``) are plotted against the objective, never compared as levels;
    ``levelled`` are the configuration factors whose levels can be compared."""

    def __init__(self, sweep_dir: Path, runs: list[dict[str, Any]]) -> None:
        swept = read_swept(sweep_dir)
        self.relevelled = relevel(runs, swept or {})
        varying = varying_factors(runs)
        present = {k for r in runs for k in r["metrics"].get(HPARAMS, {})}
        # a sweep from before sweep.json: whatever differs
        names = varying if swept is None else [n for n in dict.fromkeys(hparam_name(k) for k in swept) if n in present]
        self.names = names
        self.swept_keys = list(swept or {})
        self.search = (Path(sweep_dir) / "search.json").is_file()
        self.companions: dict[str, list[str]] = {n: [] for n in names}
        self.unexplained: list[str] = []
        done = completed(runs)
        for extra in (v for v in varying if v not in names):
            owner = next((n for n in names if _determines(done, n, extra)), None)
            (self.companions[owner] if owner else self.unexplained).append(extra)
        self.replicates = [n for n in names if n in REPLICATES]
        self.config = [n for n in names if n not in REPLICATES]
        declared = {hparam_name(k): v for k, v in read_searched(sweep_dir).items()}
        self.scales = {n: scale(done, n, declared.get(n)) for n in self.config}
        self.continuous = [n for n in self.config if self.scales[n] is not None]
        self.levelled = [n for n in self.config if n not in self.continuous and self._replicated(done, n)]

    def _replicated(self, done: list[dict[str, Any]], name: str) -> bool:
        """In a grid every level is a design point; in a search a categorical is a level only when each of its
        values has at least two completed trials (one trial per level is an anecdote, not an effect)."""
        if not self.search:
            return True
        counts: dict[str, int] = {}
        for run in done:
            level = repr(run["metrics"][HPARAMS].get(name))
            counts[level] = counts.get(level, 0) + 1
        return len(counts) > 1 and min(counts.values()) >= 2

    def label(self, name: str) -> str:
        """A factor's name with the values that came along with it: ``optim (lr)``."""
        return f"{name} ({', '.join(self.companions[name])})" if self.companions.get(name) else name

    def cell(self, hparams: dict[str, Any], name: str) -> str:
        """A run's level of a factor with its companions' values: ``adam (lr=0.001000)``."""
        extra = ", ".join(f"{c}={format_number(hparams.get(c))}" for c in self.companions.get(name, []))
        value = format_number(hparams.get(name))
        return f"{value} ({extra})" if extra else value


def _override_value(overrides: list[str], key: str) -> str | None:
    for override in overrides:
        name, sep, value = override.partition("=")
        if sep and name.lstrip("+~") == key:
            return value
    return None


def _as_level(text: str) -> Any:
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        return text


def relevel(runs: list[dict[str, Any]], swept: dict[str, list[Any]]) -> list[str]:
    """Swept keys whose recorded column merges levels that the command lines keep apart: those runs get the
    command line's value as their level. Returns the columns so corrected."""
    fixed = []
    for key in swept:
        name = hparam_name(key)
        recorded: dict[Any, set[str]] = {}
        for run in runs:
            value, hparams = _override_value(run["overrides"], key), run["metrics"].get(HPARAMS)
            if value is not None and isinstance(hparams, dict) and name in hparams:
                recorded.setdefault(repr(hparams[name]), set()).add(repr(_as_level(value)))
        if any(len(levels) > 1 for levels in recorded.values()):
            for run in runs:
                value, hparams = _override_value(run["overrides"], key), run["metrics"].get(HPARAMS)
                if value is not None and isinstance(hparams, dict):
                    hparams[name] = _as_level(value)
            fixed.append(name)
    return fixed


def scale(done: list[dict[str, Any]], name: str, declared: dict[str, Any] | None) -> str | None:
    """``"log"`` or ``"linear"`` for a factor searched over a range (declared so, or numeric with more distinct
    values than a grid would have); None for a factor with levels."""
    values = [run["metrics"][HPARAMS].get(name) for run in done]
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if declared is None and (len(numbers) < len(values) or len(set(numbers)) <= MAX_LEVELS):
        return None
    if declared is not None:
        return "log" if declared.get("log") else "linear"
    return "log" if min(numbers) > 0 and max(numbers) / min(numbers) >= 100 else "linear"


def _determines(runs: list[dict[str, Any]], factor: str, other: str) -> bool:
    """Each level of ``factor`` comes with one value of ``other`` (it came with the preset, not on its own)."""
    seen: dict[str, str] = {}
    for run in runs:
        hp = run["metrics"][HPARAMS]
        level, value = repr(hp.get(factor)), repr(hp.get(other))
        if seen.setdefault(level, value) != value:
            return False
    return len(seen) > 1
