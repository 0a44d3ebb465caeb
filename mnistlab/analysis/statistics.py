"""Signal against noise for a sweep: intervals over replicates (seeds, folds), pairwise comparisons of a factor's
levels with Holm's correction, and the verdict in words. scipy does the distributions; which runs a test may use,
and when no claim can be made at all, is decided here."""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05
CONFIDENCE = 0.95
# Metrics are stored as float32 (about 7 significant digits): spreads below this, relative to the metric's scale,
# are rounding, not noise. Accuracies differ by at least 1/N, far above it for any split below 10⁶ images.
TIE = 1e-6
UNIT = (0.0, 1.0)
CLIPPED = "†"
CLIPPED_NOTE = (
    f"{CLIPPED} the t interval reached past the metric's bounds and is cut there: with so few runs, or so much "
    "spread, its normal approximation is a rough one."
)
NO_INTERVAL_NOTE = "— no interval: one run, or runs that are all equal (no estimate of the noise)."


def metric_bounds(metric: str) -> tuple[float, float] | None:
    """[0, 1] for accuracies and F1 (``val/acc_best``, ``test/f1``); None for metrics without bounds (loss)."""
    name = metric.rpartition("/")[2]
    return UNIT if name.startswith(("acc", "f1")) else None


@dataclass(frozen=True)
class Estimate:
    """The mean of a few runs and its 95 % interval. ``low`` and ``high`` are None when there is no interval to
    give (one run, or no spread at all): a zero-width interval would claim a certainty that was never measured."""

    mean: float
    n: int
    sd: float | None = None
    low: float | None = None
    high: float | None = None
    clipped: bool = False  # cut at the metric's bounds

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None


def _has_spread(values: list[float], scale: float) -> bool:
    """Whether ``values`` differ by more than float32 rounding (``TIE``): an estimate of the noise at all."""
    return len(values) >= 2 and max(values) - min(values) > TIE * max(1.0, scale)


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student-t interval of the mean; None for fewer than two values."""
    from scipy import stats

    if len(values) < 2:
        return None
    mean, sd = statistics.fmean(values), statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1)) * sd / math.sqrt(len(values))
    return mean - half, mean + half


def _clip(low: float, high: float, bounds: tuple[float, float] | None) -> tuple[float, float, bool]:
    if bounds is None:
        return low, high, False
    clipped_low, clipped_high = max(low, bounds[0]), min(high, bounds[1])
    return clipped_low, clipped_high, (clipped_low, clipped_high) != (low, high)


def interval(
    values: list[float], confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None
) -> Estimate:
    """Mean, sd and the t interval of the mean over replicates, cut at ``bounds`` (``metric_bounds``) and flagged.

    Why a cut t interval for accuracies: the true mean lies within [0, 1], so cutting the interval there never
    drops it and the t interval's coverage is kept; inside the bounds the interval is scipy's own. A percentile
    bootstrap of 2 or 3 runs never reaches past their min and max (a 50 % interval for two runs, printed as 95 %),
    and a logit-scale interval breaks on an accuracy of exactly 1 and is an interval of another mean (that of
    the logits). The flag says the normal approximation was strained, so the reader knows the interval is rough.
    """
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(mean, len(values))
    sd = statistics.stdev(values)
    if not _has_spread(values, max(abs(v) for v in values)):
        return Estimate(mean, len(values), 0.0)
    low, high = t_interval(values, confidence) or (mean, mean)
    low, high, clipped = _clip(low, high, bounds)
    return Estimate(mean, len(values), sd, low, high, clipped)


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
    """Levels ``a`` and ``b`` of a factor; ``difference``, ``low`` and ``high`` are of a − b. ``p`` is None when
    the runs cannot tell (``reason`` says why): no interval and no verdict either way."""

    factor: str
    a: Any
    b: Any
    difference: float
    low: float | None
    high: float | None
    p: float | None
    test: str  # "paired t (4 pairs)" or "Welch t (4 vs 4 runs)"
    p_holm: float | None = None
    reason: str = ""
    clipped: bool = False

    @property
    def significant(self) -> bool:
        return self.p_holm is not None and self.p_holm < ALPHA


def _key(run: dict[str, Any], others: list[str]) -> tuple[str, ...]:
    return tuple(repr(run["x"].get(o)) for o in others)


def matched_pairs(
    runs: list[dict[str, Any]], factor: str, a: Any, b: Any, others: list[str]
) -> list[tuple[float, float]] | None:
    """The runs at levels ``a`` and ``b`` as (a, b) pairs that agree on every other factor and replicate, or
    None unless the design is fully crossed for the two levels: every run at a has exactly one match at b and
    vice versa. Two runs with the same settings at one level could pair either way, so they never pair."""
    at: dict[str, dict[tuple[str, ...], list[float]]] = {repr(a): {}, repr(b): {}}
    for run in runs:
        level = repr(run["x"].get(factor))
        if level in at:
            at[level].setdefault(_key(run, others), []).append(run["y"])
    at_a, at_b = at[repr(a)], at[repr(b)]
    if set(at_a) != set(at_b) or any(len(ys) != 1 for ys in (*at_a.values(), *at_b.values())):
        return None
    return [(at_a[key][0], at_b[key][0]) for key in at_a]


def _level(runs: list[dict[str, Any]], factor: str, level: Any) -> list[float]:
    return [r["y"] for r in runs if repr(r["x"].get(factor)) == repr(level)]


def compare(
    runs: list[dict[str, Any]], factor: str, a: Any, b: Any, others: list[str], bounds: tuple[float, float] | None
) -> Comparison:
    """Levels a and b of ``factor``: a paired t-test when the design is fully crossed for them, Welch's t on every
    run at the two levels otherwise; no test ("cannot tell") when the runs give no estimate of the noise."""
    from scipy import stats

    ya, yb = _level(runs, factor, a), _level(runs, factor, b)
    scale = max(abs(y) for y in ya + yb)
    diff_bounds = None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])
    pairs = matched_pairs(runs, factor, a, b, others)
    if pairs is not None:
        differences = [x - y for x, y in pairs]
        mean = statistics.fmean(differences)
        test = f"paired t ({len(pairs)} pair{'s' if len(pairs) != 1 else ''})"
        if len(pairs) < 2:
            return Comparison(factor, a, b, mean, None, None, None, test, reason="one pair: no estimate of the noise")
        if not _has_spread(differences, scale):
            reason = f"all {len(pairs)} paired differences are equal: no estimate of the noise; add seeds"
            return Comparison(factor, a, b, mean, None, None, None, test, reason=reason)
        result = stats.ttest_rel([x for x, _ in pairs], [y for _, y in pairs])
    else:
        mean = statistics.fmean(ya) - statistics.fmean(yb)
        test = f"Welch t ({len(ya)} vs {len(yb)} runs)"
        if min(len(ya), len(yb)) < 2:
            few = " and ".join(f"{len(ys)} run at {level}" for level, ys in ((a, ya), (b, yb)) if len(ys) < 2)
            reason = f"only {few}: no estimate of its noise; at least 2 runs at each level"
            return Comparison(factor, a, b, mean, None, None, None, test, reason=reason)
        if not (_has_spread(ya, scale) or _has_spread(yb, scale)):
            reason = "the runs at each level are all equal: no estimate of the noise; add seeds"
            return Comparison(factor, a, b, mean, None, None, None, test, reason=reason)
        result = stats.ttest_ind(ya, yb, equal_var=False)
    p = float(result.pvalue)
    if not math.isfinite(p):
        return Comparison(factor, a, b, mean, None, None, None, test, reason="no estimate of the noise")
    ci = result.confidence_interval(CONFIDENCE)
    low, high, clipped = _clip(float(ci.low), float(ci.high), diff_bounds)
    return Comparison(factor, a, b, mean, low, high, p, test, clipped=clipped)


def compare_levels(
    runs: list[dict[str, Any]], factor: str, others: list[str], bounds: tuple[float, float] | None = None
) -> list[Comparison]:
    """Every pair of ``factor``'s levels on ``y``, Holm-corrected within the factor over the comparisons that
    could be tested. ``runs`` are ``{"x": {factor: level, …}, "y": value}``; ``others`` are the other factors and
    the replicate keys, on which runs are matched; ``bounds`` those of the metric (``metric_bounds``)."""
    levels = sorted({repr(r["x"].get(factor)): r["x"].get(factor) for r in runs}.values(), key=str)
    found = [compare(runs, factor, a, b, others, bounds) for a, b in itertools.combinations(levels, 2)]
    tested = [c for c in found if c.p is not None]
    for comparison, adjusted in zip(tested, holm([c.p for c in tested if c.p is not None]), strict=True):
        comparison.p_holm = adjusted
    return found


def oriented(comparison: Comparison) -> tuple[Any, Any, float, float | None, float | None]:
    """(winner, loser, winner − loser, low, high): the difference and its interval in the sentence's direction."""
    c = comparison
    if c.difference >= 0:
        return c.a, c.b, c.difference, c.low, c.high
    return c.b, c.a, -c.difference, None if c.high is None else -c.high, None if c.low is None else -c.low


def verdict(comparison: Comparison, metric: str) -> str:
    """One sentence a reader can act on; its numbers read in the direction of its words."""
    c = comparison
    if c.p is None or c.low is None or c.high is None:
        return (
            f"{c.factor}: {c.a} vs {c.b}: cannot tell ({c.a} − {c.b} = {c.difference:+.4f} {metric}, {c.test}; "
            f"{c.reason})."
        )
    mark = CLIPPED if c.clipped else ""
    holm_p = f"Holm p = {c.p_holm:.3g}" if c.p_holm is not None else "no Holm p"
    if c.significant:
        better, worse, difference, low, high = oriented(c)
        ci = f"95 % CI {low:+.4f} to {high:+.4f}{mark}, {holm_p}, {c.test}"
        return f"{c.factor}: {better} beats {worse} by {difference:.4f} {metric} ({ci}): a real difference."
    ci = f"95 % CI {c.low:+.4f} to {c.high:+.4f}{mark}, {holm_p}, {c.test}"
    return f"{c.factor}: {c.a} vs {c.b} differ by {c.difference:+.4f} {metric} ({ci}): within noise."
