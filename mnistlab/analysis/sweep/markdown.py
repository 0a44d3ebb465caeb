"""The sections of a sweep's report.md, each a list of Markdown lines laid out from the numbers ``aggregate``
computed; no statistics are computed here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistlab.analysis.formatting import MISSING, format_number, markdown_table
from mnistlab.analysis.statistics import CLIPPED, CLIPPED_NOTE, NO_INTERVAL_NOTE, Comparison, Estimate, verdict
from mnistlab.analysis.sweep.aggregate import MIN_REGRESSION_RUNS, REPLICATED
from mnistlab.analysis.sweep.factors import Factors
from mnistlab.core.record import HPARAMS, NOT_FAILURES, RANK_BY, REASON, STATUS, TITLES, Status


def summary(
    sweep_dir: Path,
    runs: list[dict[str, Any]],
    ranked: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    factors: Factors,
) -> list[str]:
    """The title and what the sweep ran: how many runs completed, what it varied, what else differed."""
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
    return lines


def _others(not_completed: list[dict[str, Any]]) -> str:
    """``, 2 failed`` — or, for a search, ``, 1 failed, 3 pruned, 1 requeued``."""
    counts: dict[str, int] = {Status.FAILED: 0}
    for run in not_completed:
        status = run["metrics"].get(STATUS)
        status = status if status in NOT_FAILURES else Status.FAILED
        counts[status] = counts.get(status, 0) + 1
    return "".join(f", {n} {status}" for status, n in counts.items() if n or status == Status.FAILED)


def ranking(ranked: list[dict[str, Any]], factors: Factors, columns: list[tuple[str, str]]) -> list[str]:
    """Every completed run, best first: its factors, then the metric ``columns`` ``(tag, title)``."""
    headers = ["rank", "job", *(factors.label(n) for n in factors.names), *(title for _, title in columns)]
    rows = [
        [
            str(rank),
            run["job"],
            *(factors.cell(run["metrics"][HPARAMS], f) for f in factors.names),
            *(format_number(run["metrics"].get(k)) for k, _ in columns),
        ]
        for rank, run in enumerate(ranked, start=1)
    ]
    return ["", *markdown_table(headers, rows)]


def not_completed(failed: list[dict[str, Any]]) -> list[str]:
    """The runs that did not complete, with their command lines and why."""
    if not failed:
        return []
    rows = [
        [r["job"], str(r["metrics"].get(STATUS)), " ".join(r["overrides"]), str(r["metrics"].get(REASON, ""))]
        for r in failed
    ]
    return ["", "## Runs not completed", "", *markdown_table(["job", "status", "overrides", "reason"], rows)]


def _estimate(e: Estimate | None) -> str:
    """``0.9600 ± 0.0141 [0.8329, 1.0000]†``: mean ± sd [95 % interval]."""
    if e is None:
        return MISSING
    bracket = f"[{format_number(e.low, 4)}, {format_number(e.high, 4)}]{CLIPPED if e.clipped else ''}"
    return f"{format_number(e.mean, 4)} ± {format_number(e.sd, 4)} {bracket if e.has_interval else '[—]'}"


def _notes(clipped: bool, no_interval: bool) -> list[str]:
    notes = [CLIPPED_NOTE] * clipped + [NO_INTERVAL_NOTE] * no_interval
    return [line for note in notes for line in ("", note)]


def configurations(groups: list[dict[str, Any]]) -> list[str]:
    """Each configuration's REPLICATED metrics over its seeds or folds (``aggregate.seed_groups``)."""
    if not groups:
        return []
    rows = [
        [
            ", ".join(f"{k}={v}" for k, v in row["config"].items()) or "(all the same)",
            str(row["n"]),
            *(_estimate(row[k]) for k in REPLICATED),
        ]
        for row in groups
    ]
    estimates = [row[k] for row in groups for k in REPLICATED if row[k] is not None]
    return [
        "",
        "## Configurations over seeds and folds (mean ± sd [95 % interval])",
        "",
        *markdown_table(["configuration", "runs", *(TITLES[k] for k in REPLICATED)], rows),
        *_notes(any(e.clipped for e in estimates), any(not e.has_interval for e in estimates)),
    ]


def main_effects(effects: dict[str, list[dict]], factors: Factors) -> list[str]:
    """Each level's mean, interval, range and count (``aggregate.main_effects``)."""
    if not effects:
        return []
    rows = []
    for factor, levels in effects.items():
        for e in levels:
            low, high = format_number(e["low"], 4), format_number(e["high"], 4)
            bracket = f"[{low}, {high}]{CLIPPED if e['clipped'] else ''}" if e["interval"] else MISSING
            cells = [format_number(e[k], 4) for k in ("mean", "min", "max")]
            rows.append([factors.label(factor), format_number(e["level"]), cells[0], bracket, *cells[1:], str(e["n"])])
    every = [e for levels in effects.values() for e in levels]
    return [
        "",
        f"## Main effects on {RANK_BY} (mean [95 % interval] over the runs at each level)",
        "",
        *markdown_table(["factor", "level", "mean", "95 % interval", "min", "max", "runs"], rows),
        *_notes(any(e["clipped"] for e in every), any(not e["interval"] for e in every)),
    ]


def significance(found: list[Comparison], factors: Factors) -> list[str]:
    """Pairwise comparisons with Holm's correction and a verdict, when there are replicates to measure noise
    (``aggregate.comparisons``). A comparison whose runs give no estimate of the noise is "cannot tell", never a
    p-value of 0."""
    if not factors.config:
        return []
    lines = ["", "## Signal or noise", ""]
    if not factors.replicates:
        return [
            *lines,
            "Each configuration ran once, so no claim of significance can be made: a difference between two runs "
            "may be seed noise. Add replicates, e.g. `seed=1,2,3` on the same command line, and the report will "
            "test every difference.",
        ]
    if not found:
        return [*lines, "Too few completed runs per level to compare (at least two each)."]
    lines += [
        f"Differences in {RANK_BY} between the levels of each factor. A paired t-test when the design is fully "
        f"crossed for the two levels (every run at one level has exactly one run at the other with the same other "
        f"factors and {', '.join(factors.replicates)}); otherwise Welch's t-test on every run at the two levels. "
        "p-values are Holm-corrected within each factor, significant below 0.05. Where the runs give no estimate "
        "of the noise (one run or one pair, or differences that are all equal) the answer is: cannot tell.",
        "",
    ]
    rows = []
    for c in found:
        if c.p is None or c.low is None or c.high is None:
            cells = [MISSING, "cannot tell", MISSING, f"{c.test}; {c.reason}"]
        else:
            low, high = format_number(c.low, 4, signed=True), format_number(c.high, 4, signed=True)
            holm_p = MISSING if c.p_holm is None else f"{c.p_holm:.3g}"
            cells = [f"[{low}, {high}]{CLIPPED if c.clipped else ''}", f"{c.p:.3g}", holm_p, c.test]
        levels = f"{format_number(c.a)} − {format_number(c.b)}"
        rows.append([factors.label(c.factor), levels, format_number(c.difference, 4, signed=True), *cells])
    headers = ["factor", "levels", "difference", "95 % interval", "p", "p (Holm)", "test"]
    lines += [*markdown_table(headers, rows), "", *(f"- {verdict(c, RANK_BY)}" for c in found)]
    if any(c.clipped for c in found):
        lines += ["", CLIPPED_NOTE]
    return lines


def interaction(cross: tuple[str, str, dict] | None) -> list[str]:
    """The mean of each cell of two factors (``aggregate.interaction``): one factor's levels down, the other's
    across."""
    if cross is None:
        return []
    rows_name, cols_name, cells = cross
    rows = sorted({k[0] for k in cells}, key=str)
    cols = sorted({k[1] for k in cells}, key=str)
    headers = [f"{rows_name} \\ {cols_name}", *(format_number(c) for c in cols)]
    body = [[format_number(r), *(format_number(cells.get((r, c))) for c in cols)] for r in rows]
    return ["", f"## Interaction of {rows_name} and {cols_name} (mean {RANK_BY})", "", *markdown_table(headers, body)]


def searched_parameters(effects: dict[str, dict], factors: Factors) -> list[str]:
    """Each parameter searched over a range: its values, slope and rank correlation, and what they say
    (``aggregate.continuous_effects``)."""
    if not effects:
        return []
    rows = []
    for name, e in effects.items():
        xs = [x for x, _ in e["points"]]
        if not xs:
            rows.append(
                [factors.label(name), e["scale"], "0", MISSING, MISSING, MISSING, "no completed run searched it"]
            )
            continue
        tried = f"{format_number(min(xs))} … {format_number(max(xs))}"
        unit = "decade" if e["scale"] == "log" else "unit"
        if "slope" in e:
            slope = f"{e['slope']:+.3g} per {unit} [{e['low']:+.3g}, {e['high']:+.3g}]"
            rho = f"{e['rho']:+.2f} ({e['rho_p']:.2g})"
            if e["low"] > 0 or e["high"] < 0:
                reading = f"higher {name} went with {'higher' if e['slope'] > 0 else 'lower'} {RANK_BY}"
            else:
                reading = "cannot tell (the interval holds 0)"
        else:
            slope, rho = MISSING, MISSING
            reading = f"cannot tell: {e['n']} runs (a slope needs {MIN_REGRESSION_RUNS})"
        rows.append([factors.label(name), e["scale"], str(e["n"]), tried, slope, rho, reading])
    headers = ["parameter", "scale", "runs", "values tried", "slope [95 % interval]", "Spearman ρ (p)", "reading"]
    return [
        "",
        f"## Parameters searched over a range ({RANK_BY} against each value)",
        "",
        f"The slope is the change in {RANK_BY} per decade (log scale) or per unit (linear), fitted by least squares "
        f"from {MIN_REGRESSION_RUNS} completed runs on; below that, only the plot. A search samples where it expects "
        "good results and moves the other parameters at the same time: these are associations among the runs it "
        "chose, not controlled effects (a grid with seeds measures those).",
        "",
        *markdown_table(headers, rows),
    ]
