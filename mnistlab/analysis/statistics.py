"""Signal against noise for a sweep: intervals over replicates (seeds, folds), pairwise comparisons of a factor's
levels with Holm's correction, and the verdict in words. scipy does the distributions; the bookkeeping of which
runs to compare is ours."""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05


def interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """Mean, sd and the Student-t confidence interval of the mean (the interval is the mean itself for n=1)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0, mean, mean
    sd = statistics.stdev(values)
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * sd / math.sqrt(len(values))
    return mean, sd, mean - half, mean + half


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone), in the input's order."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


@dataclass
class Comparison:
    factor: str
    a: Any
    b: Any
    difference: float  # mean of a − mean of b
    low: float
    high: float
    p: float
    test: str  # "paired t (n pairs)" or "Welch t"
    p_holm: float = 1.0

    @property
    def significant(self) -> bool:
        return self.p_holm < ALPHA


def _pairs(runs: list[dict[str, Any]], factor: str, a: Any, b: Any, others: list[str]) -> list[tuple[float, float]]:
    """Runs at levels a and b that agree on every other factor and replicate (matched pairs)."""
    key = lambda run: tuple(repr(run["x"].get(o)) for o in others)  # noqa: E731
    at_b = {key(r): r["y"] for r in runs if r["x"].get(factor) == b}
    return [(r["y"], at_b[key(r)]) for r in runs if r["x"].get(factor) == a and key(r) in at_b]


def _p(pvalue: float, difference: float) -> float:
    """scipy's p; without any variance there is no estimate of the noise: no claim (1.0)."""
    if math.isnan(pvalue) or math.isinf(pvalue):
        return 1.0
    return float(pvalue)


def compare_levels(runs: list[dict[str, Any]], factor: str, others: list[str]) -> list[Comparison]:
    """Every pair of ``factor``'s levels on ``y``, Holm-corrected within the factor. ``runs`` are
    ``{"x": {factor: level, …}, "y": value}``; ``others`` are the other factors and the replicate keys, on which
    runs are matched: a paired t-test when the design is crossed, Welch's otherwise."""
    from scipy import stats

    levels = sorted({r["x"].get(factor) for r in runs}, key=str)
    found: list[Comparison] = []
    for a, b in itertools.combinations(levels, 2):
        pairs = _pairs(runs, factor, a, b, others)
        if len(pairs) >= 2:
            differences = [x - y for x, y in pairs]
            mean, _, low, high = interval(differences)
            p = _p(stats.ttest_rel(*zip(*pairs, strict=False)).pvalue, mean)
            found.append(Comparison(factor, a, b, mean, low, high, float(p), f"paired t ({len(pairs)} pairs)"))
            continue
        ya = [r["y"] for r in runs if r["x"].get(factor) == a]
        yb = [r["y"] for r in runs if r["x"].get(factor) == b]
        if len(ya) < 2 or len(yb) < 2:
            continue
        test = stats.ttest_ind(ya, yb, equal_var=False)
        low, high = test.confidence_interval(0.95)
        difference = statistics.fmean(ya) - statistics.fmean(yb)
        p = _p(test.pvalue, difference)
        found.append(Comparison(factor, a, b, difference, float(low), float(high), p, "Welch t"))
    for comparison, adjusted in zip(found, holm([c.p for c in found]), strict=True):
        comparison.p_holm = adjusted
    return found


def verdict(comparison: Comparison, metric: str) -> str:
    """One sentence a reader can act on."""
    c = comparison
    ci = f"95 % CI {c.low:+.4f} to {c.high:+.4f}, Holm p = {c.p_holm:.3g}, {c.test}"
    if c.significant:
        better, worse = (c.a, c.b) if c.difference > 0 else (c.b, c.a)
        return f"{c.factor}: {better} beats {worse} by {abs(c.difference):.4f} {metric} ({ci}): a real difference."
    return f"{c.factor}: {c.a} vs {c.b} differ by {c.difference:+.4f} {metric} ({ci}): within noise."
