"""The sweep report: one table of every run of a sweep, ranked by val/acc_best, the main effect of each
factor that varies, seed variance, and plots. Written when a multirun ends and by ``python -m mnistlab.report``.
Output in the sweep dir: ``report.md``, ``runs.csv``, ``main_effects.png``, ``val_curves.png``.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path
from typing import Any

from mnistlab.analysis.figures import pyplot, save_figure
from mnistlab.analysis.runs import job_dirs, load_runs
from mnistlab.core.errors import ConfigError

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


def main_effects(runs: list[dict[str, Any]], factors: list[str], metric: str = RANK_BY) -> dict[str, list[dict]]:
    """For each factor: mean, min, max and count of ``metric`` over the completed runs at each level."""
    effects = {}
    for factor in factors:
        levels: dict[Any, list[float]] = {}
        for run in completed(runs):
            levels.setdefault(run["metrics"]["hparams"].get(factor), []).append(float(run["metrics"][metric]))
        if 1 < len(levels) <= MAX_LEVELS:
            effects[factor] = [
                {"level": level, "mean": statistics.fmean(v), "min": min(v), "max": max(v), "n": len(v)}
                for level, v in sorted(levels.items(), key=lambda item: str(item[0]))
            ]
    return effects


REPLICATES = ("seed", "fold")


def seed_groups(runs: list[dict[str, Any]], factors: list[str]) -> list[dict[str, Any]]:
    """With ``seed`` or ``fold`` among the factors: runs grouped by every other factor, mean ± sd over the
    seeds (or k-fold folds)."""
    if not any(f in REPLICATES for f in factors):
        return []
    others = [f for f in factors if f not in REPLICATES]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in completed(runs):
        groups.setdefault(tuple(run["metrics"]["hparams"].get(f) for f in others), []).append(run["metrics"])
    rows = []
    for key, members in groups.items():
        row = {"config": dict(zip(others, key, strict=True)), "n": len(members)}
        for metric in ("val/acc_best", "test/acc"):
            values = [float(m[metric]) for m in members if m.get(metric) is not None]
            row[metric] = (
                (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else None
            )
        rows.append(row)
    return sorted(rows, key=lambda r: -(r["val/acc_best"] or (0.0, 0.0))[0])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return "—" if value is None else str(value)


def write_report(sweep_dir: Path) -> Path:
    """Write the sweep's report files; returns the path of report.md."""
    sweep_dir = Path(sweep_dir)
    runs = load_runs(sweep_dir)
    factors = varying_factors(runs)
    ranked = sorted(completed(runs), key=lambda r: -float(r["metrics"][RANK_BY]))
    failed = [r for r in runs if r not in ranked]
    columns = [(k, t) for k, t in COLUMNS if k not in OPTIONAL_COLUMNS or any(k in r["metrics"] for r in runs)]
    _write_csv(sweep_dir / "runs.csv", ranked, failed, factors, columns)
    effects = main_effects(runs, factors)
    lines = [
        f"# Sweep report: {sweep_dir}",
        "",
        f"{len(ranked)} of {len(runs)} runs completed, {len(failed)} failed. "
        f"Ranked by {RANK_BY}; factors that vary: {', '.join(factors) or 'none'}.",
        "",
        "| rank | job | " + " | ".join([*factors, *(title for _, title in columns)]) + " |",
        "|" + "---|" * (2 + len(factors) + len(columns)),
    ]
    for rank, run in enumerate(ranked, start=1):
        m = run["metrics"]
        cells = [str(rank), run["job"], *(_fmt(m["hparams"].get(f)) for f in factors)]
        lines.append("| " + " | ".join([*cells, *(_fmt(m.get(k)) for k, _ in columns)]) + " |")
    if failed:
        lines += ["", "## Failed runs", "", "| job | overrides | reason |", "|---|---|---|"]
        lines += [f"| {r['job']} | {' '.join(r['overrides'])} | {r['metrics'].get('reason', '')} |" for r in failed]
    lines += _effect_sections(effects, seed_groups(runs, factors))
    for title, name in _plots(sweep_dir, effects, ranked):
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    report = sweep_dir / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


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


def _effect_sections(effects: dict[str, list[dict]], seeds: list[dict[str, Any]]) -> list[str]:
    """Markdown of the main effects and of the seed (or fold) variance, where there are any."""
    lines: list[str] = []
    if effects:
        lines += [
            "",
            f"## Main effects on {RANK_BY}",
            "",
            "| factor | level | mean | min | max | runs |",
            "|---|---|---|---|---|---|",
        ]
        for factor, levels in effects.items():
            lines += [
                f"| {factor} | {_fmt(e['level'])} | {e['mean']:.4f} | {e['min']:.4f} | {e['max']:.4f} | {e['n']} |"
                for e in levels
            ]
    if seeds:
        lines += ["", "## Seed and fold variance (mean ± sd over the replicates)", ""]
        lines += ["| configuration | runs | val acc best | test acc |", "|---|---|---|---|"]
        for row in seeds:
            config = ", ".join(f"{k}={v}" for k, v in row["config"].items()) or "(all the same)"
            cells = [f"{row[k][0]:.4f} ± {row[k][1]:.4f}" if row[k] else "—" for k in ("val/acc_best", "test/acc")]
            lines.append(f"| {config} | {row['n']} | {cells[0]} | {cells[1]} |")
    return lines


def _plots(sweep_dir: Path, effects: dict[str, list[dict]], ranked: list[dict[str, Any]]) -> list[tuple[str, str]]:
    plt = pyplot()
    written = []
    if effects:
        figure, axes = plt.subplots(1, len(effects), figsize=(3.2 * len(effects), 3.2), squeeze=False, sharey=True)
        for ax, (factor, levels) in zip(axes.flat, effects.items(), strict=True):
            means = [e["mean"] for e in levels]
            errors = [
                [m - e["min"] for m, e in zip(means, levels, strict=True)],
                [e["max"] - m for m, e in zip(means, levels, strict=True)],
            ]
            ax.bar([str(e["level"]) for e in levels], means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
            ax.set_title(factor)
            ax.tick_params(axis="x", rotation=45)
        axes.flat[0].set_ylabel(f"{RANK_BY} (mean, min–max)")
        low = min(e["min"] for levels in effects.values() for e in levels)
        axes.flat[0].set_ylim(max(0.0, low - 0.05), 1.0)
        figure.tight_layout()
        save_figure(figure, sweep_dir / "main_effects.png", dpi=110)
        written.append(("Main effects", "main_effects.png"))
    curves = [r for r in ranked if r["metrics"].get("val_curve")][:5]
    if curves:
        figure, ax = plt.subplots(figsize=(6, 4))
        for run in curves:
            curve = run["metrics"]["val_curve"]
            ax.plot(range(1, len(curve) + 1), curve, marker="o", label=f"job {run['job']}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("val/acc")
        ax.legend()
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
