"""The search section of a sweep report (``hparams_search``): trials by state, the best trial's command line,
parameter importances and the optimization history, from the search.json the sweeper keeps."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from mnistlab.analysis.formatting import format_number, markdown_table
from mnistlab.analysis.sweep.plots import plot_search_history


def read_search(sweep_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """The sweeper's search.json and its trials (those run beyond the budget left out); None without one."""
    try:
        search = json.loads((Path(sweep_dir) / "search.json").read_text())
        trials = [t for t in search["trials"] if not t.get("surplus")]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return search, trials


def statistics_by_state(trials: list[dict[str, Any]]) -> str:
    """``16 complete, 1 fail, 1 pruned``: the trials counted by state, states in alphabetical order."""
    counts = Counter(str(trial.get("state")).lower() for trial in trials)
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def search_section(sweep_dir: Path) -> list[str]:
    """The section's Markdown lines (none without a search.json); draws search_history.png from two completed
    trials on."""
    found = read_search(sweep_dir)
    if found is None:
        return []
    search, trials = found
    lines = [
        "",
        "## Search",
        "",
        f"{len(trials)} trials: {statistics_by_state(trials)}; objective {search.get('objective')} "
        f"({search.get('direction')}).",
    ]
    best = search.get("best")
    if isinstance(best, dict):
        lines += [
            "",
            f"Best trial {best.get('number')} ({format_number(best.get('value'))}); to train it again:",
            "",
            "    " + str(best.get("command")).replace("\r", " ").replace("\n", " "),  # one code line, always
        ]
    lines += _importance_lines(search)
    odd = [t for t in trials if t.get("state") in ("PRUNED", "FAIL")]
    if odd:
        rows = [[str(t["number"]), str(t["state"]), t.get("reason") or "its worker stopped; queued again"] for t in odd]
        lines += ["", *markdown_table(["trial", "state", "reason"], rows)]
    values = [(t["number"], t["value"]) for t in trials if t.get("state") == "COMPLETE" and t.get("value") is not None]
    if len(values) >= 2:
        maximize = search.get("direction") == "maximize"
        plot_search_history(Path(sweep_dir) / "search_history.png", values, str(search.get("objective")), maximize)
        lines += ["", "![optimization history](search_history.png)"]
    return lines


def _importance_lines(search: dict[str, Any]) -> list[str]:
    """The parameter importances the sweeper computed, named by their method, with how little few trials say."""
    importances = search.get("importances") or {}
    if not isinstance(importances, dict) or not importances:
        return []
    # the method the sweeper computed them with and named (mnistlab.search.sweeper.importance_method): a file
    # that names none gets a column that claims none
    method = str(search.get("importance_method") or "")
    n = search.get("importance_trials")
    rows = [[k, format_number(float(v), 2)] for k, v in importances.items()]
    label = f"importance ({method.split(' (')[0]})" if method else "importance"
    lines = ["", *markdown_table(["parameter", label], rows)]
    if isinstance(n, int):
        caution = (
            "a rough hint only (a model fitted to so few points can rank the parameters differently after the "
            "next trials)"
            if n < 20
            else "rankings settle from a few dozen trials, and small differences between importances mean little"
        )
        what = (  # what fANOVA measures; another method is not described by it
            " They share out the variance of the objective among the parameters searched in every trial and say "
            "nothing of direction."
            if method.startswith("fANOVA")
            else " They say nothing of direction."
        )
        by = f" by {method}" if method else ""
        lines += ["", f"Importances{by}, from {n} completed trials: {caution}.{what}"]
    return lines
