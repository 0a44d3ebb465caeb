"""A sweep's report files: report.md, runs.csv and the plots, written into the sweep dir when a multirun ends
and by ``mnistlab-report``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistlab.analysis.runs import job_dirs, load_runs
from mnistlab.analysis.sweep import aggregate, markdown
from mnistlab.analysis.sweep.factors import Factors, completed
from mnistlab.analysis.sweep.plots import plot_continuous, write_plots
from mnistlab.analysis.sweep.search import search_section
from mnistlab.core.errors import ConfigError
from mnistlab.core.files import write_csv_atomic, write_text_atomic
from mnistlab.core.record import HPARAMS, METRICS, RANK_BY, REASON, STATUS


def report_columns(runs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The metric columns ``(tag, title)`` of the ranking and runs.csv: those of METRICS with a title, an
    optional one only when some run has it."""
    return [
        (m.tag, m.title)
        for m in METRICS
        if m.title is not None and (not m.optional or any(m.tag in r["metrics"] for r in runs))
    ]


def write_report(sweep_dir: Path) -> Path:
    """Write the sweep's report files; returns the path of report.md."""
    sweep_dir = Path(sweep_dir)
    runs = load_runs(sweep_dir)
    factors = Factors(sweep_dir, runs)
    ranked = sorted(completed(runs), key=lambda r: -float(r["metrics"][RANK_BY]))
    failed = [r for r in runs if r not in ranked]
    columns = report_columns(runs)
    shown = [n for name in factors.names for n in (name, *factors.companions[name])]
    _write_csv(sweep_dir / "runs.csv", ranked, failed, shown, columns)
    effects = aggregate.main_effects(runs, factors.levelled)
    cross = aggregate.interaction(runs, factors)
    searched = aggregate.continuous_effects(runs, factors)
    lines = [
        *markdown.summary(sweep_dir, runs, ranked, failed, factors),
        *provenance_warnings(sweep_dir, runs),
        *markdown.ranking(ranked, factors, columns),
        *markdown.not_completed(failed),
        *markdown.configurations(aggregate.seed_groups(runs, factors)),
        *markdown.main_effects(effects, factors),
        *markdown.significance(aggregate.comparisons(runs, factors), factors),
        *markdown.interaction(cross),
        *markdown.searched_parameters(searched, factors),
    ]
    plotted = {name: e for name, e in searched.items() if e["points"]}
    if plotted:
        plot_continuous(sweep_dir / "searched_parameters.png", plotted, runs, factors)
        lines += ["", "![searched parameters](searched_parameters.png)"]
    lines += search_section(sweep_dir)
    for title, name in write_plots(sweep_dir, effects, ranked, cross, factors):
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    report = sweep_dir / "report.md"
    write_text_atomic(report, "\n".join(lines) + "\n")
    return report


def provenance_warnings(sweep_dir: Path, runs: list[dict[str, Any]]) -> list[str]:
    """A warning for each part of the jobs' provenance that differs between them: code (commit and uncommitted
    changes), installed packages, data. A comparison between jobs that ran different code measures that too."""
    import hashlib

    from mnistlab.core import provenance

    def digest(path: Path) -> str | None:
        try:
            return hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest() if path.is_file() else None
        except OSError:
            return None

    aspects: dict[str, dict[str, list[str]]] = {"code": {}, "installed packages": {}, "data": {}}
    for run in runs:
        job_dir = Path(sweep_dir) / run["job"]
        record = provenance.read(job_dir)
        if record is None:
            continue
        git = record.get("git") or {}
        code = f"commit {str(git.get('commit'))[:8]}" if git else f"mnistlab {record.get('mnistlab')}"
        if git.get("dirty"):
            code += f" + changes {digest(job_dir / provenance.PATCH_FILE)}"
        packages = digest(job_dir / provenance.PACKAGES_FILE) or "unknown"
        data = str((record.get("data") or {}).get("fingerprint"))
        for aspect, value in (("code", code), ("installed packages", packages), ("data", data)):
            aspects[aspect].setdefault(value, []).append(run["job"])
    lines = []
    for aspect, values in aspects.items():
        if len(values) > 1:
            groups = "; ".join(f"{value}: jobs {', '.join(jobs)}" for value, jobs in values.items())
            lines += [
                "",
                f"**Warning: the jobs of this sweep ran with different {aspect}** ({groups}); differences "
                "between them may come from that, not from the factors.",
            ]
    return lines


def _write_csv(path: Path, ranked: list[dict], failed: list[dict], factors: list[str], columns: list) -> None:
    """One row per run, completed ones ranked first: its status, factors, metric columns and failure reason."""
    rows = []
    for rank, run in enumerate(ranked + failed, start=1):
        m = run["metrics"]
        hparams = [m.get(HPARAMS, {}).get(f) for f in factors]
        values = [m.get(k) for k, _ in columns]
        rows.append([rank if run in ranked else "", run["job"], m.get(STATUS), *hparams, *values, m.get(REASON, "")])
    write_csv_atomic(path, ["rank", "job", "status", *factors, *(key for key, _ in columns), "reason"], rows)


def check_sweep_dir(sweep_dir: Path | str) -> Path:
    """``sweep_dir`` as a Path, or a ConfigError when it holds no job dirs (not a multirun dir)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir() or not job_dirs(sweep_dir):
        raise ConfigError(f"{sweep_dir} is not a multirun dir (no job dirs with .hydra/ in it)")
    return sweep_dir
