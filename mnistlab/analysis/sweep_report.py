"""The sweep report: every run of a sweep ranked by val/acc_best; the factors the sweep varied (a value that only
came with a preset is shown with its factor: ``optim (lr)``); with seeds or folds, each configuration's mean ± sd
and 95 % interval, main effects with intervals, pairwise comparisons with Holm's correction and a verdict in
words; the interaction of two factors; plots. Written when a multirun ends and by ``mnistlab-report``.
Output in the sweep dir: ``report.md``, ``runs.csv``, ``main_effects.png``, ``interaction.png``,
``val_curves.png``.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from mnistlab.analysis.figures import pyplot, save_figure
from mnistlab.analysis.runs import job_dirs, load_runs
from mnistlab.analysis.statistics import compare_levels, interval, verdict
from mnistlab.core.errors import ConfigError
from mnistlab.core.factors import hparam_name, read_searched, read_swept, run_label

RANK_BY = "val/acc_best"
MAX_LEVELS = 8  # a factor with more distinct values (a searched lr, say) is continuous: no main-effect bars
COLUMNS = [
    ("val/acc_best", "val acc best"),
    ("test/acc", "test acc"),
    ("test/f1", "test F1"),
    ("test/loss", "test loss"),
    ("best_epoch", "best epoch"),
    ("test/map_50", "test mAP@0.5"),  # detectors only (columns no run has are left out)
    ("test/map", "test mAP@[.5:.95]"),
    ("time_per_epoch_s", "s/epoch"),
    ("train_time_s", "train s"),
    ("peak_memory_mb", "peak MB"),
    ("params", "params"),
]
OPTIONAL_COLUMNS = ("test/map_50", "test/map")


def varying_factors(runs: list[dict[str, Any]]) -> list[str]:
    """HParams keys whose value differs between runs, in the order train.py logs them."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run["metrics"].get("hparams", {}) if k not in keys]
    return [
        k
        for k in keys
        if len({repr(r["metrics"].get("hparams", {}).get(k)) for r in runs if r["metrics"].get("hparams")}) > 1
    ]


def completed(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if r["metrics"].get("status") == "completed" and r["metrics"].get(RANK_BY) is not None]


REPLICATES = ("seed", "fold")


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
        self.relevelled = _relevel(runs, swept or {})
        varying = varying_factors(runs)
        present = {k for r in runs for k in r["metrics"].get("hparams", {})}
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
        self.scales = {n: _scale(done, n, declared.get(n)) for n in self.config}
        self.continuous = [n for n in self.config if self.scales[n] is not None]
        self.levelled = [n for n in self.config if n not in self.continuous and self._replicated(done, n)]

    def _replicated(self, done: list[dict[str, Any]], name: str) -> bool:
        """In a grid every level is a design point; in a search a categorical is a level only when each of its
        values has at least two completed trials (one trial per level is an anecdote, not an effect)."""
        if not self.search:
            return True
        counts: dict[str, int] = {}
        for run in done:
            level = repr(run["metrics"]["hparams"].get(name))
            counts[level] = counts.get(level, 0) + 1
        return len(counts) > 1 and min(counts.values()) >= 2

    def label(self, name: str) -> str:
        return f"{name} ({', '.join(self.companions[name])})" if self.companions.get(name) else name

    def cell(self, hparams: dict[str, Any], name: str) -> str:
        extra = ", ".join(f"{c}={_fmt(hparams.get(c))}" for c in self.companions.get(name, []))
        return f"{_fmt(hparams.get(name))} ({extra})" if extra else _fmt(hparams.get(name))


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


def _relevel(runs: list[dict[str, Any]], swept: dict[str, list[Any]]) -> list[str]:
    """Swept keys whose recorded column merges levels that the command lines keep apart: those runs get the
    command line's value as their level. Returns the columns so corrected."""
    fixed = []
    for key in swept:
        name = hparam_name(key)
        recorded: dict[Any, set[str]] = {}
        for run in runs:
            value, hparams = _override_value(run["overrides"], key), run["metrics"].get("hparams")
            if value is not None and isinstance(hparams, dict) and name in hparams:
                recorded.setdefault(repr(hparams[name]), set()).add(repr(_as_level(value)))
        if any(len(levels) > 1 for levels in recorded.values()):
            for run in runs:
                value, hparams = _override_value(run["overrides"], key), run["metrics"].get("hparams")
                if value is not None and isinstance(hparams, dict):
                    hparams[name] = _as_level(value)
            fixed.append(name)
    return fixed


def _scale(done: list[dict[str, Any]], name: str, declared: dict[str, Any] | None) -> str | None:
    """``"log"`` or ``"linear"`` for a factor searched over a range (declared so, or numeric with more distinct
    values than a grid would have); None for a factor with levels."""
    values = [run["metrics"]["hparams"].get(name) for run in done]
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
        hp = run["metrics"]["hparams"]
        level, value = repr(hp.get(factor)), repr(hp.get(other))
        if seen.setdefault(level, value) != value:
            return False
    return len(seen) > 1


def _points(runs: list[dict[str, Any]], metric: str = RANK_BY) -> list[dict[str, Any]]:
    return [{"x": r["metrics"]["hparams"], "y": float(r["metrics"][metric])} for r in completed(runs)]


def main_effects(runs: list[dict[str, Any]], factors: list[str], metric: str = RANK_BY) -> dict[str, list[dict]]:
    """For each factor: mean, 95 % interval, min, max and count of ``metric`` over the completed runs at each
    level (the other factors averaged over). ``interval`` is False where there is none to give (one run, or no
    spread); ``low`` and ``high`` are then the mean, so that a plot draws no error bar. ``clipped``: the interval
    was cut at the metric's bounds (``statistics.interval``)."""
    from mnistlab.analysis.statistics import metric_bounds

    effects = {}
    for factor in factors:
        levels: dict[str, tuple[Any, list[float]]] = {}
        for run in completed(runs):
            level = run["metrics"]["hparams"].get(factor)
            levels.setdefault(repr(level), (level, []))[1].append(float(run["metrics"][metric]))
        if 1 < len(levels) <= MAX_LEVELS:
            effects[factor] = []
            for level, values in sorted(levels.values(), key=lambda item: str(item[0])):
                estimate = interval(values, bounds=metric_bounds(metric))
                effects[factor].append(
                    {
                        "level": level,
                        "mean": estimate.mean,
                        "low": estimate.low if estimate.low is not None else estimate.mean,
                        "high": estimate.high if estimate.high is not None else estimate.mean,
                        "interval": estimate.has_interval,
                        "clipped": estimate.clipped,
                        "min": min(values),
                        "max": max(values),
                        "n": len(values),
                    }
                )
    return effects


def seed_groups(runs: list[dict[str, Any]], factors: Factors) -> list[dict[str, Any]]:
    """With seeds or folds: runs grouped by every configuration factor, each metric's ``statistics.Estimate``
    (mean, sd, 95 % interval) over the replicates; best mean val/acc_best first."""
    from mnistlab.analysis.statistics import metric_bounds

    if not factors.replicates:
        return []
    groups: dict[str, tuple[tuple, list[dict[str, Any]]]] = {}
    for run in completed(runs):
        key = tuple(run["metrics"]["hparams"].get(f) for f in factors.config)
        groups.setdefault(repr(key), (key, []))[1].append(run["metrics"])
    rows = []
    for key, members in groups.values():
        row: dict[str, Any] = {"config": dict(zip(factors.config, key, strict=True)), "n": len(members)}
        for metric in ("val/acc_best", "test/acc"):
            values = [float(m[metric]) for m in members if m.get(metric) is not None]
            row[metric] = interval(values, bounds=metric_bounds(metric)) if values else None
        rows.append(row)
    return sorted(rows, key=lambda r: -r["val/acc_best"].mean if r["val/acc_best"] else 0.0)


def interaction(runs: list[dict[str, Any]], factors: Factors) -> tuple[str, str, dict] | None:
    """Mean ``RANK_BY`` over the cells of the first two configuration factors that vary (few levels each)."""
    points = _points(runs)
    pair = [f for f in factors.levelled if 1 < len({repr(p["x"].get(f)) for p in points}) <= MAX_LEVELS][:2]
    if len(pair) < 2:
        return None
    cells: dict[tuple, list[float]] = {}
    for point in points:
        cells.setdefault((point["x"].get(pair[0]), point["x"].get(pair[1])), []).append(point["y"])
    return pair[0], pair[1], {key: statistics.fmean(values) for key, values in cells.items()}


def _fmt(value: Any) -> str:
    """Four significant digits below 10 (0.9701, 0.003437, 1.090e-05: never 0.0000 for a value that is not
    zero), one decimal above."""
    if isinstance(value, float):
        if value == 0 or value != value:
            return "0" if value == 0 else "nan"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:#.4g}".rstrip(".")
    return "—" if value is None else str(value)


def write_report(sweep_dir: Path) -> Path:
    """Write the sweep's report files; returns the path of report.md."""
    sweep_dir = Path(sweep_dir)
    runs = load_runs(sweep_dir)
    factors = Factors(sweep_dir, runs)
    ranked = sorted(completed(runs), key=lambda r: -float(r["metrics"][RANK_BY]))
    failed = [r for r in runs if r not in ranked]
    columns = [(k, t) for k, t in COLUMNS if k not in OPTIONAL_COLUMNS or any(k in r["metrics"] for r in runs)]
    shown = [n for name in factors.names for n in (name, *factors.companions[name])]
    _write_csv(sweep_dir / "runs.csv", ranked, failed, shown, columns)
    effects = main_effects(runs, factors.levelled)
    lines = [
        f"# Sweep report: {sweep_dir}",
        "",
        f"{len(ranked)} of {len(runs)} runs completed{_others(failed)}. Ranked by {RANK_BY} (selection is "
        f"on validation; test accuracy is reported, not used). Factors varied: "
        f"{', '.join(factors.label(n) for n in factors.names) or 'none'}.",
    ]
    if factors.unexplained:
        lines += ["", f"Also differing between runs without being swept: {', '.join(factors.unexplained)}."]
    if factors.relevelled:
        lines += [
            "",
            f"The runs' records name fewer levels of {', '.join(factors.relevelled)} than their command lines "
            "(records from an older mnistlab): the levels shown are the values swept on the command line.",
        ]
    if factors.continuous:
        lines += [
            "",
            f"Searched over a range: {', '.join(factors.continuous)}. Each run has its own value, so these are "
            "plotted against the objective (and regressed on it from 10 runs) instead of compared as levels.",
        ]
    lines += [
        "",
        "| rank | job | " + " | ".join([*(factors.label(n) for n in factors.names), *(t for _, t in columns)]) + " |",
        "|" + "---|" * (2 + len(factors.names) + len(columns)),
    ]
    for rank, run in enumerate(ranked, start=1):
        m = run["metrics"]
        cells = [str(rank), run["job"], *(factors.cell(m["hparams"], f) for f in factors.names)]
        lines.append("| " + " | ".join([*cells, *(_fmt(m.get(k)) for k, _ in columns)]) + " |")
    if failed:
        lines += ["", "## Runs not completed", "", "| job | status | overrides | reason |", "|---|---|---|---|"]
        for r in failed:
            m = r["metrics"]
            lines.append(f"| {r['job']} | {m.get('status')} | {' '.join(r['overrides'])} | {m.get('reason', '')} |")
    lines += _configuration_section(seed_groups(runs, factors))
    lines += _effect_section(effects, factors)
    lines += _significance_section(runs, factors)
    cross = interaction(runs, factors)
    lines += _interaction_section(cross)
    lines += _continuous_section(sweep_dir, runs, factors)
    lines += _search_section(sweep_dir)
    for title, name in _plots(sweep_dir, effects, ranked, cross, factors):
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    report = sweep_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _others(not_completed: list[dict[str, Any]]) -> str:
    """``, 2 failed`` — or, for a search, ``, 1 failed, 3 pruned, 1 requeued``."""
    counts: dict[str, int] = {"failed": 0}
    for run in not_completed:
        status = str(run["metrics"].get("status"))
        status = status if status in ("pruned", "requeued") else "failed"
        counts[status] = counts.get(status, 0) + 1
    return "".join(f", {n} {status}" for status, n in counts.items() if n or status == "failed")


def _write_csv(path: Path, ranked: list[dict], failed: list[dict], factors: list[str], columns: list) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "job", "status", *factors, *(key for key, _ in columns), "reason"])
        for rank, run in enumerate(ranked + failed, start=1):
            m = run["metrics"]
            hparams = [m.get("hparams", {}).get(f) for f in factors]
            values = [m.get(k) for k, _ in columns]
            writer.writerow(
                [rank if run in ranked else "", run["job"], m.get("status"), *hparams, *values, m.get("reason", "")]
            )


def _configuration_section(groups: list[dict[str, Any]]) -> list[str]:
    from mnistlab.analysis.statistics import CLIPPED, CLIPPED_NOTE, NO_INTERVAL_NOTE

    if not groups:
        return []
    lines = ["", "## Configurations over seeds and folds (mean ± sd [95 % interval])", ""]
    lines += ["| configuration | runs | val acc best | test acc |", "|---|---|---|---|"]
    estimates = [row[k] for row in groups for k in ("val/acc_best", "test/acc") if row[k] is not None]
    for row in groups:
        config = ", ".join(f"{k}={v}" for k, v in row["config"].items()) or "(all the same)"
        cells = []
        for k in ("val/acc_best", "test/acc"):
            e = row[k]
            if e is None:
                cells.append("—")
                continue
            sd = "—" if e.sd is None else f"{e.sd:.4f}"
            bracket = f"[{e.low:.4f}, {e.high:.4f}]{CLIPPED if e.clipped else ''}" if e.has_interval else "[—]"
            cells.append(f"{e.mean:.4f} ± {sd} {bracket}")
        lines.append(f"| {config} | {row['n']} | {cells[0]} | {cells[1]} |")
    notes = [CLIPPED_NOTE] * any(e.clipped for e in estimates)
    notes += [NO_INTERVAL_NOTE] * any(not e.has_interval for e in estimates)
    return [*lines, *(n for note in notes for n in ("", note))]


def _effect_section(effects: dict[str, list[dict]], factors: Factors) -> list[str]:
    from mnistlab.analysis.statistics import CLIPPED, CLIPPED_NOTE, NO_INTERVAL_NOTE

    if not effects:
        return []
    lines = ["", f"## Main effects on {RANK_BY} (mean [95 % interval] over the runs at each level)", ""]
    lines += ["| factor | level | mean | 95 % interval | min | max | runs |", "|---|---|---|---|---|---|---|"]
    for factor, levels in effects.items():
        for e in levels:
            bracket = f"[{e['low']:.4f}, {e['high']:.4f}]{CLIPPED if e['clipped'] else ''}" if e["interval"] else "—"
            lines.append(
                f"| {factors.label(factor)} | {_fmt(e['level'])} | {e['mean']:.4f} | {bracket} "
                f"| {e['min']:.4f} | {e['max']:.4f} | {e['n']} |"
            )
    every = [e for levels in effects.values() for e in levels]
    notes = [CLIPPED_NOTE] * any(e["clipped"] for e in every) + [NO_INTERVAL_NOTE] * any(
        not e["interval"] for e in every
    )
    return [*lines, *(n for note in notes for n in ("", note))]


def _significance_section(runs: list[dict[str, Any]], factors: Factors) -> list[str]:
    """Pairwise comparisons with Holm's correction and a verdict, when there are replicates to measure noise.
    A comparison whose runs give no estimate of the noise is "cannot tell", never a p-value of 0."""
    from mnistlab.analysis.statistics import CLIPPED, CLIPPED_NOTE, metric_bounds

    lines = ["", "## Signal or noise", ""]
    if not factors.config:
        return []
    if not factors.replicates:
        return [
            *lines,
            "Each configuration ran once, so no claim of significance can be made: a difference between two runs "
            "may be seed noise. Add replicates, e.g. `seed=1,2,3` on the same command line, and the report will "
            "test every difference.",
        ]
    points = _points(runs)
    comparisons = []
    for factor in factors.levelled:
        others = [f for f in factors.names if f != factor]
        comparisons += compare_levels(points, factor, others, metric_bounds(RANK_BY))
    if not comparisons:
        return [*lines, "Too few completed runs per level to compare (at least two each)."]
    lines += [
        f"Differences in {RANK_BY} between the levels of each factor. A paired t-test when the design is fully "
        f"crossed for the two levels (every run at one level has exactly one run at the other with the same other "
        f"factors and {', '.join(factors.replicates)}); otherwise Welch's t-test on every run at the two levels. "
        "p-values are Holm-corrected within each factor, significant below 0.05. Where the runs give no estimate "
        "of the noise (one run or one pair, or differences that are all equal) the answer is: cannot tell.",
        "",
        "| factor | levels | difference | 95 % interval | p | p (Holm) | test |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        if c.p is None or c.low is None or c.high is None:
            cells = ["—", "cannot tell", "—", f"{c.test}; {c.reason}"]
        else:
            bracket = f"[{c.low:+.4f}, {c.high:+.4f}]{CLIPPED if c.clipped else ''}"
            holm_p = "—" if c.p_holm is None else f"{c.p_holm:.3g}"
            cells = [bracket, f"{c.p:.3g}", holm_p, c.test]
        levels = f"{_fmt(c.a)} − {_fmt(c.b)}"
        lines.append(f"| {factors.label(c.factor)} | {levels} | {c.difference:+.4f} | " + " | ".join(cells) + " |")
    lines += ["", *(f"- {verdict(c, RANK_BY)}" for c in comparisons)]
    if any(c.clipped for c in comparisons):
        lines += ["", CLIPPED_NOTE]
    return lines


def _interaction_section(cross: tuple[str, str, dict] | None) -> list[str]:
    if cross is None:
        return []
    rows_name, cols_name, cells = cross
    rows = sorted({k[0] for k in cells}, key=str)
    cols = sorted({k[1] for k in cells}, key=str)
    lines = ["", f"## Interaction of {rows_name} and {cols_name} (mean {RANK_BY})", ""]
    lines += [
        f"| {rows_name} \\ {cols_name} | " + " | ".join(_fmt(c) for c in cols) + " |",
        "|---" * (1 + len(cols)) + "|",
    ]
    for r in rows:
        lines.append(f"| {_fmt(r)} | " + " | ".join(_fmt(cells.get((r, c))) for c in cols) + " |")
    return lines


MIN_REGRESSION_RUNS = 10  # fewer points than this: a scatter only, no slope


def continuous_effects(runs: list[dict[str, Any]], factors: Factors, metric: str = RANK_BY) -> dict[str, dict]:
    """For each factor searched over a range: the completed runs' ``(value, metric)`` points and, from
    MIN_REGRESSION_RUNS of them, the least-squares slope of the metric per unit of the value (per decade on a log
    scale) with its 95 % t interval, and Spearman's rank correlation (scipy)."""
    import math

    from scipy import stats

    effects: dict[str, dict] = {}
    for name in factors.continuous:
        points = [
            (float(value), float(run["metrics"][metric]))
            for run in completed(runs)
            if isinstance(value := run["metrics"]["hparams"].get(name), int | float) and not isinstance(value, bool)
        ]
        log = factors.scales[name] == "log" and all(x > 0 for x, _ in points)
        entry: dict[str, Any] = {"scale": "log" if log else "linear", "n": len(points), "points": points}
        xs = [math.log10(x) if log else x for x, _ in points]
        ys = [y for _, y in points]
        if len(points) >= MIN_REGRESSION_RUNS and len(set(xs)) > 2 and len(set(ys)) > 1:
            fit = stats.linregress(xs, ys)
            half = float(stats.t.ppf(0.975, len(points) - 2) * fit.stderr)
            rank = stats.spearmanr(xs, ys)
            entry.update(
                slope=float(fit.slope),
                low=float(fit.slope) - half,
                high=float(fit.slope) + half,
                p=float(fit.pvalue),
                rho=float(rank.statistic),
                rho_p=float(rank.pvalue),
            )
        effects[name] = entry
    return effects


def _continuous_section(sweep_dir: Path, runs: list[dict[str, Any]], factors: Factors) -> list[str]:
    effects = continuous_effects(runs, factors)
    if not effects:
        return []
    plotted = {name: e for name, e in effects.items() if e["points"]}
    lines = [
        "",
        f"## Parameters searched over a range ({RANK_BY} against each value)",
        "",
        f"The slope is the change in {RANK_BY} per decade (log scale) or per unit (linear), fitted by least squares "
        f"from {MIN_REGRESSION_RUNS} completed runs on; below that, only the plot. A search samples where it expects "
        "good results and moves the other parameters at the same time: these are associations among the runs it "
        "chose, not controlled effects (a grid with seeds measures those).",
        "",
        "| parameter | scale | runs | values tried | slope [95 % interval] | Spearman ρ (p) | reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, e in effects.items():
        xs = [x for x, _ in e["points"]]
        if not xs:
            lines.append(f"| {factors.label(name)} | {e['scale']} | 0 | — | — | — | no completed run searched it |")
            continue
        tried = f"{_fmt(min(xs))} … {_fmt(max(xs))}"
        unit = "decade" if e["scale"] == "log" else "unit"
        if "slope" in e:
            slope = f"{e['slope']:+.3g} per {unit} [{e['low']:+.3g}, {e['high']:+.3g}]"
            rho = f"{e['rho']:+.2f} ({e['rho_p']:.2g})"
            if e["low"] > 0 or e["high"] < 0:
                reading = f"higher {name} went with {'higher' if e['slope'] > 0 else 'lower'} {RANK_BY}"
            else:
                reading = "cannot tell (the interval holds 0)"
        else:
            slope, rho = "—", "—"
            reading = f"cannot tell: {e['n']} runs (a slope needs {MIN_REGRESSION_RUNS})"
        lines.append(f"| {factors.label(name)} | {e['scale']} | {e['n']} | {tried} | {slope} | {rho} | {reading} |")
    if not plotted:
        return lines
    _plot_continuous(sweep_dir, plotted, runs, factors)
    return [*lines, "", "![searched parameters](searched_parameters.png)"]


def _plot_continuous(sweep_dir: Path, effects: dict[str, dict], runs: list[dict[str, Any]], factors: Factors) -> None:
    """One panel per searched parameter: the objective against its value (log axis on a log scale), coloured by
    the first categorical factor; the best run starred."""
    plt = pyplot()
    hue = next((n for n in factors.config if n not in factors.continuous), None)
    done = [r for r in completed(runs)]
    best = max(done, key=lambda r: float(r["metrics"][RANK_BY]), default=None)
    figure, axes = plt.subplots(1, len(effects), figsize=(3.6 * len(effects), 3.4), squeeze=False, sharey=True)
    for ax, (name, effect) in zip(axes.flat, effects.items(), strict=True):
        groups: dict[str, list[tuple[float, float]]] = {}
        for run in done:
            value = run["metrics"]["hparams"].get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                key = _fmt(run["metrics"]["hparams"].get(hue)) if hue else "run"
                groups.setdefault(key, []).append((float(value), float(run["metrics"][RANK_BY])))
        for key, points in sorted(groups.items()):
            ax.plot(*zip(*points, strict=True), "o", alpha=0.8, label=f"{hue}={key}" if hue else None)
        if best is not None and isinstance(best["metrics"]["hparams"].get(name), int | float):
            ax.plot([best["metrics"]["hparams"][name]], [best["metrics"][RANK_BY]], "*", ms=14, color="gold", mec="k")
        if effect["scale"] == "log":
            ax.set_xscale("log")
        ax.set_xlabel(name)
        if hue and len(groups) > 1:
            ax.legend(fontsize=8)
    axes.flat[0].set_ylabel(RANK_BY)
    figure.tight_layout()
    save_figure(figure, sweep_dir / "searched_parameters.png", dpi=110)


def _search_section(sweep_dir: Path) -> list[str]:
    """For ``hparams_search``: the trials by state, the best trial's command line, parameter importances and
    the optimization history (from the search.json the sweeper keeps)."""
    import json

    try:
        search = json.loads((sweep_dir / "search.json").read_text())
        trials = [t for t in search["trials"] if not t.get("surplus")]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    states = statistics_by_state(trials)
    lines = [
        "",
        "## Search",
        "",
        f"{len(trials)} trials: {states}; objective {search.get('objective')} ({search.get('direction')}).",
    ]
    best = search.get("best")
    if isinstance(best, dict):
        lines += [
            "",
            f"Best trial {best.get('number')} ({_fmt(best.get('value'))}); to train it again:",
            "",
            f"    {best.get('command')}",
        ]
    lines += _importance_lines(search)
    odd = [t for t in trials if t.get("state") in ("PRUNED", "FAIL")]
    if odd:
        lines += ["", "| trial | state | reason |", "|---|---|---|"]
        lines += [
            f"| {t['number']} | {t['state']} | {t.get('reason') or 'its worker stopped; queued again'} |" for t in odd
        ]
    values = [(t["number"], t["value"]) for t in trials if t.get("state") == "COMPLETE" and t.get("value") is not None]
    if len(values) >= 2:
        plt = pyplot()
        figure, ax = plt.subplots(figsize=(6.5, 3.8))
        numbers, ys = zip(*sorted(values), strict=True)
        pick = max if search.get("direction") == "maximize" else min
        best_so_far = [pick(ys[: i + 1]) for i in range(len(ys))]
        ax.plot(numbers, ys, "o", label="trial")
        ax.step(numbers, best_so_far, where="post", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(str(search.get("objective")))
        ax.legend()
        ax.set_title("optimization history")
        figure.tight_layout()
        save_figure(figure, sweep_dir / "search_history.png", dpi=110)
        lines += ["", "![optimization history](search_history.png)"]
    return lines


def _importance_lines(search: dict[str, Any]) -> list[str]:
    """The parameter importances the sweeper computed, named by their method, with how little few trials say."""
    importances = search.get("importances") or {}
    if not isinstance(importances, dict) or not importances:
        return []
    method = str(search.get("importance_method") or "fANOVA")
    n = search.get("importance_trials")
    lines = ["", f"| parameter | importance ({method.split(' (')[0]}) |", "|---|---|"]
    lines += [f"| {k} | {float(v):.2f} |" for k, v in importances.items()]
    if isinstance(n, int):
        caution = (
            "a rough hint only (a forest fitted to so few points can rank the parameters differently after the "
            "next trials)"
            if n < 20
            else "rankings settle from a few dozen trials, and small differences between importances mean little"
        )
        lines += [
            "",
            f"Importances by {method}, from {n} completed trials: {caution}. They share out the variance of the "
            "objective among the parameters searched in every trial and say nothing of direction.",
        ]
    return lines


def statistics_by_state(trials: list[dict[str, Any]]) -> str:
    from collections import Counter

    counts = Counter(str(trial.get("state")).lower() for trial in trials)
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _plots(
    sweep_dir: Path, effects: dict[str, list[dict]], ranked: list[dict[str, Any]], cross: Any, factors: Factors
) -> list[tuple[str, str]]:
    plt = pyplot()
    written = []
    if effects:
        figure, axes = plt.subplots(1, len(effects), figsize=(3.4 * len(effects), 3.6), squeeze=False, sharey=True)
        for ax, (factor, levels) in zip(axes.flat, effects.items(), strict=True):
            means = [e["mean"] for e in levels]
            errors = [
                [m - e["low"] for m, e in zip(means, levels, strict=True)],
                [e["high"] - m for m, e in zip(means, levels, strict=True)],
            ]
            ax.bar(range(len(levels)), means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
            ax.set_xticks(range(len(levels)), [_fmt(e["level"]) for e in levels], rotation=30)
            ax.set_title(factors.label(factor), fontsize=11)
        axes.flat[0].set_ylabel(f"{RANK_BY} (mean, 95 % interval)")
        low = min(e["min"] for levels in effects.values() for e in levels)
        axes.flat[0].set_ylim(max(0.0, low - 0.05), 1.0)
        figure.tight_layout()
        save_figure(figure, sweep_dir / "main_effects.png", dpi=110)
        written.append(("Main effects", "main_effects.png"))
    if cross is not None:
        rows_name, cols_name, cells = cross
        rows = sorted({k[0] for k in cells}, key=str)
        cols = sorted({k[1] for k in cells}, key=str)
        grid = [[cells.get((r, c), float("nan")) for c in cols] for r in rows]
        figure, ax = plt.subplots(figsize=(1.4 * len(cols) + 2.2, 0.9 * len(rows) + 1.6))
        image = ax.imshow(grid, cmap="viridis")
        ax.set_xticks(range(len(cols)), [_fmt(c) for c in cols])
        ax.set_yticks(range(len(rows)), [_fmt(r) for r in rows])
        ax.set_xlabel(cols_name)
        ax.set_ylabel(rows_name)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                ax.text(j, i, _fmt(value), ha="center", va="center", fontsize=10, color="white")
        figure.colorbar(image, ax=ax, label=f"mean {RANK_BY}")
        figure.tight_layout()
        save_figure(figure, sweep_dir / "interaction.png", dpi=110)
        written.append(("Interaction", "interaction.png"))
    curves = [r for r in ranked if r["metrics"].get("val_curve")][:5]
    if curves:
        figure, ax = plt.subplots(figsize=(7, 4.2))
        for run in curves:
            curve = run["metrics"]["val_curve"]
            name = run_label(run["overrides"], factors.swept_keys) or f"job {run['job']}"
            ax.plot(range(1, len(curve) + 1), curve, marker="o", label=f"{name} (job {run['job']})")
        ax.set_xlabel("epoch")
        ax.set_ylabel("val/acc")
        ax.legend(fontsize=9)
        ax.set_title("validation accuracy of the top runs")
        figure.tight_layout()
        save_figure(figure, sweep_dir / "val_curves.png", dpi=110)
        written.append(("Validation curves of the top runs", "val_curves.png"))
    return written


def check_sweep_dir(sweep_dir: Path) -> Path:
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir() or not job_dirs(sweep_dir):
        raise ConfigError(f"{sweep_dir} is not a multirun dir (no job dirs with .hydra/ in it)")
    return sweep_dir
