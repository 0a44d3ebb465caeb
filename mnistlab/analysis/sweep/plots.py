"""The sweep report's pictures, drawn from the numbers ``aggregate`` computed and saved as PNG in the sweep dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnistlab.analysis.figures import pyplot, save_figure
from mnistlab.analysis.formatting import format_number
from mnistlab.analysis.sweep.factors import Factors, completed
from mnistlab.core.factors import run_label
from mnistlab.core.record import HPARAMS, RANK_BY, VAL_ACC, VAL_CURVE


def write_plots(
    sweep_dir: Path, effects: dict[str, list[dict]], ranked: list[dict[str, Any]], cross: Any, factors: Factors
) -> list[tuple[str, str]]:
    """main_effects.png, interaction.png and val_curves.png, each when there is something to draw; returns the
    ``(title, file name)`` of those written."""
    written = []
    if effects:
        _plot_main_effects(sweep_dir / "main_effects.png", effects, factors)
        written.append(("Main effects", "main_effects.png"))
    if cross is not None:
        _plot_interaction(sweep_dir / "interaction.png", cross)
        written.append(("Interaction", "interaction.png"))
    curves = [r for r in ranked if r["metrics"].get(VAL_CURVE)][:5]
    if curves:
        _plot_val_curves(sweep_dir / "val_curves.png", curves, factors)
        written.append(("Validation curves of the top runs", "val_curves.png"))
    return written


def _plot_main_effects(path: Path, effects: dict[str, list[dict]], factors: Factors) -> None:
    """One panel per factor: the mean at each level with its 95 % interval as error bars."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(effects), figsize=(3.4 * len(effects), 3.6), squeeze=False, sharey=True)
    for ax, (factor, levels) in zip(axes.flat, effects.items(), strict=True):
        means = [e["mean"] for e in levels]
        errors = [
            [m - e["low"] for m, e in zip(means, levels, strict=True)],
            [e["high"] - m for m, e in zip(means, levels, strict=True)],
        ]
        ax.bar(range(len(levels)), means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(levels)), [format_number(e["level"]) for e in levels], rotation=30)
        ax.set_title(factors.label(factor), fontsize=11)
    axes.flat[0].set_ylabel(f"{RANK_BY} (mean, 95 % interval)")
    low = min(e["min"] for levels in effects.values() for e in levels)
    axes.flat[0].set_ylim(max(0.0, low - 0.05), 1.0)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)


def _plot_interaction(path: Path, cross: tuple[str, str, dict]) -> None:
    """The mean of each cell of two factors as a heat map, its value written in."""
    plt = pyplot()
    rows_name, cols_name, cells = cross
    rows = sorted({k[0] for k in cells}, key=str)
    cols = sorted({k[1] for k in cells}, key=str)
    grid = [[cells.get((r, c), float("nan")) for c in cols] for r in rows]
    figure, ax = plt.subplots(figsize=(1.4 * len(cols) + 2.2, 0.9 * len(rows) + 1.6))
    image = ax.imshow(grid, cmap="viridis")
    ax.set_xticks(range(len(cols)), [format_number(c) for c in cols])
    ax.set_yticks(range(len(rows)), [format_number(r) for r in rows])
    ax.set_xlabel(cols_name)
    ax.set_ylabel(rows_name)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, format_number(value), ha="center", va="center", fontsize=10, color="white")
    figure.colorbar(image, ax=ax, label=f"mean {RANK_BY}")
    figure.tight_layout()
    save_figure(figure, path, dpi=110)


def _plot_val_curves(path: Path, curves: list[dict[str, Any]], factors: Factors) -> None:
    """The validation accuracy of the top runs, epoch by epoch, named by their swept choices."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(7, 4.2))
    for run in curves:
        curve = run["metrics"][VAL_CURVE]
        name = run_label(run["overrides"], factors.swept_keys) or f"job {run['job']}"
        ax.plot(range(1, len(curve) + 1), curve, marker="o", label=f"{name} (job {run['job']})")
    ax.set_xlabel("epoch")
    ax.set_ylabel(VAL_ACC)
    ax.legend(fontsize=9)
    ax.set_title("validation accuracy of the top runs")
    figure.tight_layout()
    save_figure(figure, path, dpi=110)


def plot_continuous(path: Path, effects: dict[str, dict], runs: list[dict[str, Any]], factors: Factors) -> None:
    """One panel per searched parameter: the objective against its value (log axis on a log scale), coloured by
    the first categorical factor; the best run starred."""
    plt = pyplot()
    hue = next((n for n in factors.config if n not in factors.continuous), None)
    done = completed(runs)
    best = max(done, key=lambda r: float(r["metrics"][RANK_BY]), default=None)
    figure, axes = plt.subplots(1, len(effects), figsize=(3.6 * len(effects), 3.4), squeeze=False, sharey=True)
    for ax, (name, effect) in zip(axes.flat, effects.items(), strict=True):
        groups: dict[str, list[tuple[float, float]]] = {}
        for run in done:
            value = run["metrics"][HPARAMS].get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                key = format_number(run["metrics"][HPARAMS].get(hue)) if hue else "run"
                groups.setdefault(key, []).append((float(value), float(run["metrics"][RANK_BY])))
        for key, found in sorted(groups.items()):
            ax.plot(*zip(*found, strict=True), "o", alpha=0.8, label=f"{hue}={key}" if hue else None)
        if best is not None and isinstance(best["metrics"][HPARAMS].get(name), int | float):
            ax.plot([best["metrics"][HPARAMS][name]], [best["metrics"][RANK_BY]], "*", ms=14, color="gold", mec="k")
        if effect["scale"] == "log":
            ax.set_xscale("log")
        ax.set_xlabel(name)
        if hue and len(groups) > 1:
            ax.legend(fontsize=8)
    axes.flat[0].set_ylabel(RANK_BY)
    figure.tight_layout()
    save_figure(figure, path, dpi=110)


def plot_search_history(path: Path, values: list[tuple[int, float]], objective: str, maximize: bool) -> None:
    """A search's completed trials ``(number, value)`` in order, with the best value so far as a step line."""
    plt = pyplot()
    figure, ax = plt.subplots(figsize=(6.5, 3.8))
    numbers, ys = zip(*sorted(values), strict=True)
    pick = max if maximize else min
    best_so_far = [pick(ys[: i + 1]) for i in range(len(ys))]
    ax.plot(numbers, ys, "o", label="trial")
    ax.step(numbers, best_so_far, where="post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.legend()
    ax.set_title("optimization history")
    figure.tight_layout()
    save_figure(figure, path, dpi=110)
