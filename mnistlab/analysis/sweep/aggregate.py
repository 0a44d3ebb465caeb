"""The numbers of a sweep report, computed from the completed runs: main effects with intervals, configurations
over their replicates, pairwise comparisons, the interaction of two factors and the slopes of parameters searched
over a range. Plain data, so that tests check numbers and the Markdown and the plots only lay them out."""

from __future__ import annotations

import statistics
from typing import Any

from mnistlab.analysis.statistics import Comparison, compare_levels, interval, metric_bounds
from mnistlab.analysis.sweep.factors import MAX_LEVELS, Factors, completed
from mnistlab.core.record import HPARAMS, RANK_BY, TEST_ACC

REPLICATED = (RANK_BY, TEST_ACC)  # the metrics given per configuration over its seeds or folds
MIN_REGRESSION_RUNS = 10  # fewer points than this: a scatter only, no slope


def points(runs: list[dict[str, Any]], metric: str = RANK_BY) -> list[dict[str, Any]]:
    """Each completed run as ``{"x": its HParams row, "y": its metric}``."""
    return [{"x": r["metrics"][HPARAMS], "y": float(r["metrics"][metric])} for r in completed(runs)]


def main_effects(runs: list[dict[str, Any]], factors: list[str], metric: str = RANK_BY) -> dict[str, list[dict]]:
    """For each factor: mean, 95 % interval, min, max and count of ``metric`` over the completed runs at each
    level (the other factors averaged over). ``interval`` is False where there is none to give (one run, or no
    spread); ``low`` and ``high`` are then the mean, so that a plot draws no error bar. ``clipped``: the interval
    was cut at the metric's bounds (``statistics.interval``)."""
    effects: dict[str, list[dict]] = {}
    for factor in factors:
        levels: dict[str, tuple[Any, list[float]]] = {}
        for run in completed(runs):
            level = run["metrics"][HPARAMS].get(factor)
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
    """With seeds or folds: runs grouped by every configuration factor, each REPLICATED metric's
    ``statistics.Estimate`` (mean, sd, 95 % interval) over the replicates; best mean RANK_BY first."""
    if not factors.replicates:
        return []
    groups: dict[str, tuple[tuple, list[dict[str, Any]]]] = {}
    for run in completed(runs):
        key = tuple(run["metrics"][HPARAMS].get(f) for f in factors.config)
        groups.setdefault(repr(key), (key, []))[1].append(run["metrics"])
    rows = []
    for key, members in groups.values():
        row: dict[str, Any] = {"config": dict(zip(factors.config, key, strict=True)), "n": len(members)}
        for metric in REPLICATED:
            values = [float(m[metric]) for m in members if m.get(metric) is not None]
            row[metric] = interval(values, bounds=metric_bounds(metric)) if values else None
        rows.append(row)
    return sorted(rows, key=lambda r: -r[RANK_BY].mean if r[RANK_BY] else 0.0)


def comparisons(runs: list[dict[str, Any]], factors: Factors) -> list[Comparison]:
    """Every pair of levels of each levelled factor, compared on RANK_BY with Holm's correction within the factor
    (``statistics.compare_levels``); the other factors and the replicates pair the runs where the design allows.
    Nothing without replicates: one run per configuration gives no estimate of the noise."""
    found: list[Comparison] = []
    if not factors.replicates:
        return found
    scored = points(runs)
    for factor in factors.levelled:
        others = [f for f in factors.names if f != factor]
        found += compare_levels(scored, factor, others, metric_bounds(RANK_BY))
    return found


def interaction(runs: list[dict[str, Any]], factors: Factors) -> tuple[str, str, dict] | None:
    """Mean ``RANK_BY`` over the cells of the first two configuration factors that vary (few levels each)."""
    scored = points(runs)
    pair = [f for f in factors.levelled if 1 < len({repr(p["x"].get(f)) for p in scored}) <= MAX_LEVELS][:2]
    if len(pair) < 2:
        return None
    cells: dict[tuple, list[float]] = {}
    for point in scored:
        cells.setdefault((point["x"].get(pair[0]), point["x"].get(pair[1])), []).append(point["y"])
    return pair[0], pair[1], {key: statistics.fmean(values) for key, values in cells.items()}


def continuous_effects(runs: list[dict[str, Any]], factors: Factors, metric: str = RANK_BY) -> dict[str, dict]:
    """For each factor searched over a range: the completed runs' ``(value, metric)`` points and, from
    MIN_REGRESSION_RUNS of them, the least-squares slope of the metric per unit of the value (per decade on a log
    scale) with its 95 % t interval, and Spearman's rank correlation (scipy)."""
    import math

    from scipy import stats

    effects: dict[str, dict] = {}
    for name in factors.continuous:
        found = [
            (float(value), float(run["metrics"][metric]))
            for run in completed(runs)
            if isinstance(value := run["metrics"][HPARAMS].get(name), int | float) and not isinstance(value, bool)
        ]
        log = factors.scales[name] == "log" and all(x > 0 for x, _ in found)
        entry: dict[str, Any] = {"scale": "log" if log else "linear", "n": len(found), "points": found}
        xs = [math.log10(x) if log else x for x, _ in found]
        ys = [y for _, y in found]
        if len(found) >= MIN_REGRESSION_RUNS and len(set(xs)) > 2 and len(set(ys)) > 1:
            fit = stats.linregress(xs, ys)
            half = float(stats.t.ppf(0.975, len(found) - 2) * fit.stderr)
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
