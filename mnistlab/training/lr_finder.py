"""The LR range test: Lightning's ``Tuner.lr_find`` runs the sweep; the rate is chosen, checked and plotted here.

Lightning 2.6's own ``suggestion()`` differentiates the loss against the *linear* learning rate: at small rates
the points are so close together that any noise is a huge slope, so it suggests a rate near the bottom of the
sweep (1e-4 where 3e-3 trains far better). Its curve also starts with an artefact of the smoothed loss's bias
correction (the first points read low, then climb), and when the data runs out before ``num_training`` steps it
says the loss diverged. So the suggestion is computed from the finder's results, and applied only when the sweep
was complete and the rate is plausible next to the preset's.
"""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.analysis.figures import pyplot, save_figure, tensorboard_writers

log = logging.getLogger("mnistlab.train")

EARLY_STOP = 4.0  # Lightning stops the sweep once the smoothed loss exceeds this many times its best so far
# points left out at the start: the smoothed loss's first points read low (half the loss at the first) and
# climb steeply for some 10 steps, then slowly (a rise, which cannot pass for the descent being looked for)
SKIP_MIN = 10
SKIP_FRACTION = 0.1  # … or this share of a longer sweep
DEFAULT_MAX_FACTOR = 10.0


def rate(lr: float) -> str:
    """A learning rate as the logs and the plot show it: 3e-03, 7.9e-03."""
    return f"{lr:.1e}".replace(".0e", "e")


@dataclass(frozen=True)
class Suggestion:
    """The steepest descent of the loss against log10(lr) between the skipped start and the loss's minimum.

    ``lr``/``index``: the suggested rate and its point (None when the loss never descends); ``first``: the first
    point considered; ``last``: the minimum, the end of the descent; ``why_none``: why there is no suggestion.
    """

    lr: float | None
    index: int | None
    first: int
    last: int
    why_none: str = ""


def skipped_start(points: int) -> int:
    """How many first points the bias-corrected smoothing distorts (they read low and climb)."""
    return max(SKIP_MIN, math.ceil(SKIP_FRACTION * points))


def suggest_lr(lrs: Sequence[float], losses: Sequence[float], skip: int | None = None) -> Suggestion:
    """The rate where the smoothed loss falls fastest per decade of lr, before its minimum.

    Steepest descent is the usual heuristic (fastai, Lightning), here on log10(lr) as the sweep is spaced: the
    rate where training makes the most progress per step. Alternatives were weighed: fastai's "minimum / 10"
    rests on the noisiest point of the curve (the minimum sits just before divergence and moves with the
    batch order), and its "valley" (middle of the longest descent) needs a clean monotone run that a noisy
    smoothed loss seldom has; the steepest slope over the whole descent between the skipped start and the
    minimum is stable, and the sanity check against the preset's rate catches the rest.
    """
    lr = np.asarray(lrs, dtype=float)
    loss = np.asarray(losses, dtype=float)
    first = skipped_start(len(loss)) if skip is None else skip
    finite = np.flatnonzero(np.isfinite(loss) & np.isfinite(lr) & (lr > 0))
    finite = finite[finite >= first]
    if len(finite) < 3:
        return Suggestion(None, None, first, len(loss) - 1, f"too few points ({len(loss)}) after the first {first}")
    last = int(finite[np.argmin(loss[finite])])
    window = finite[finite <= last]
    if len(window) < 3:
        return Suggestion(None, None, first, last, "the loss never descends")
    slope = np.gradient(loss[window], np.log10(lr[window]))
    steepest = int(np.argmin(slope))
    if slope[steepest] >= 0:
        return Suggestion(None, None, first, last, "the loss never descends")
    index = int(window[steepest])
    return Suggestion(float(lr[index]), index, first, last)


@dataclass(frozen=True)
class Outcome:
    """What the finder found and did: the suggestion, the preset's rate, the rate training uses and why."""

    suggestion: Suggestion
    preset: float
    applied: bool
    reason: str  # why the suggestion was not applied ("" when it was)
    steps: int
    asked: int

    @property
    def lr(self) -> float:
        """The rate training starts from."""
        return self.suggestion.lr if self.applied and self.suggestion.lr is not None else self.preset

    def record(self) -> dict[str, Any]:
        """The keys for metrics.json."""
        return {
            "lr_find/suggestion": self.suggestion.lr,
            "lr_find/applied": self.applied,
            "lr_find/reason": self.reason or None,
            "lr_find/steps": self.steps,
        }


def ended_early(losses: Sequence[float], asked: int) -> str:
    """Why a sweep has fewer than ``asked`` points: "" (complete), "diverged" (the normal end of a range
    test: Lightning's stop rule) or "ran out of batches"."""
    loss = np.asarray(losses, dtype=float)
    if len(loss) >= asked:
        return ""
    finite = loss[np.isfinite(loss)]
    if len(finite) >= 2 and finite[-1] > EARLY_STOP * finite[:-1].min():
        return "diverged"
    return "ran out of batches"


def judge(
    lrs: Sequence[float], losses: Sequence[float], preset: float, asked: int, max_factor: float = DEFAULT_MAX_FACTOR
) -> Outcome:
    """Suggest a rate and decide whether to use it: only from a sweep that was not cut short by the data, for
    a rate within ``max_factor`` of the preset's whose loss is below the loss at the start of the curve (its
    first point after the skipped start, still on the slow climb, so slightly low: the check errs on keeping
    the preset)."""
    suggestion = suggest_lr(lrs, losses)
    steps = len(losses)
    end = ended_early(losses, asked)

    def outcome(reason: str) -> Outcome:
        return Outcome(suggestion, preset, not reason, reason, steps, asked)

    if end == "ran out of batches":
        reached = rate(lrs[-1]) if len(lrs) else "—"
        return outcome(
            f"the data gave {steps} of tune.num_training={asked} steps (lr reached only {reached}); lower "
            "tune.num_training or allow more batches"
        )
    if suggestion.lr is None:
        return outcome(suggestion.why_none)
    s = suggestion.lr
    factor = max(s / preset, preset / s)
    if factor > max_factor:
        side = "above" if s > preset else "below"
        return outcome(f"{factor:.0f}x {side} the preset's {rate(preset)} (tune.max_factor={max_factor:g})")
    loss = np.asarray(losses, dtype=float)
    if not loss[suggestion.index] < loss[suggestion.first]:
        return outcome("its loss is not below the loss at the start of the curve")
    return outcome("")


class _DropStoppedEarly(logging.Filter):
    """Lightning's "LR finder stopped early … due to diverging loss", also said when the data simply ran out;
    ``find_lr`` says which it was."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("LR finder stopped early")


def find_lr(trainer: Any, model: Any, datamodule: Any, tune: Any, out_dir: Path | None) -> dict[str, Any]:
    """Run the range test; set ``model.lr`` to the suggestion when it passes the checks; save and log
    ``lr_find.png`` (unless ``out_dir`` is None). Returns the keys for metrics.json (none when Lightning ran no
    sweep).

    ``configure_optimizers`` reads ``model.lr``, so the rate reaches the optimizer (a Hydra partial alone
    would keep its own lr and silently ignore it).
    """
    from lightning.pytorch.tuner import Tuner

    preset = float(model.lr)
    asked = int(tune.num_training)
    stopped = logging.getLogger("lightning.pytorch.tuner.lr_finder")
    quiet = _DropStoppedEarly()
    stopped.addFilter(quiet)
    try:
        finder = Tuner(trainer).lr_find(
            model,
            datamodule=datamodule,
            min_lr=float(tune.min_lr),
            max_lr=float(tune.max_lr),
            num_training=asked,
            early_stop_threshold=EARLY_STOP,
            attr_name="lr",
            update_attr=False,
        )
    finally:
        stopped.removeFilter(quiet)
        for leftover in Path(trainer.default_root_dir).glob(".lr_find_*.ckpt"):
            leftover.unlink()
    if finder is None:
        return {}
    lrs, losses = list(finder.results["lr"]), list(finder.results["loss"])
    result = judge(lrs, losses, preset, asked, float(tune.get("max_factor") or DEFAULT_MAX_FACTOR))
    if ended_early(losses, asked) == "diverged":
        log.info(
            "LR finder: the loss diverged at lr %s after %d of %d steps (the sweep's end)",
            rate(lrs[-1]),
            len(lrs),
            asked,
        )
    if result.applied:
        model.lr = result.lr
        log.info("LR finder: suggestion %s applied (the preset's was %s)", rate(result.lr), rate(preset))
    else:
        what = f"suggestion {rate(result.suggestion.lr)}" if result.suggestion.lr is not None else "no suggestion"
        log.info("LR finder: %s not applied: %s; keeping %s", what, result.reason, rate(preset))
    if out_dir is not None:
        figure = plot(lrs, losses, result)
        save_figure(figure, out_dir / "lr_find.png", "lr_find", tensorboard_writers(trainer.loggers), dpi=100)
    return result.record()


def plot(lrs: Sequence[float], losses: Sequence[float], result: Outcome) -> Any:
    """Loss against lr (log axis): the skipped start greyed, the suggestion, the preset's rate and the rate
    training uses, with a legend saying whether the suggestion was applied and why not."""
    plt = pyplot()
    lr, loss = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    s = result.suggestion
    figure, ax = plt.subplots(figsize=(7, 5.5))
    first = min(s.first, len(lr))
    ax.plot(lr[: first + 1], loss[: first + 1], color="0.7", label=f"skipped: smoothing start ({first} points)")
    ax.plot(lr[first:], loss[first:], color="C0", label="smoothed training loss")
    if s.lr is not None and s.index is not None:
        status = "applied" if result.applied else f"not applied: {result.reason}"
        label = textwrap.fill(f"suggested {rate(s.lr)} ({status})", 90, subsequent_indent="    ")
        ax.plot(s.lr, loss[s.index], "o", color="red", markersize=9, label=label)
    ax.axvline(result.preset, color="0.3", linestyle="--", label=f"preset {rate(result.preset)}")
    kept = "" if result.applied else " (the preset's)"
    ax.axvline(result.lr, color="C2", linewidth=2, alpha=0.6, label=f"applied: training uses {rate(result.lr)}{kept}")
    ax.set_xscale("log")
    finite = loss[first:][np.isfinite(loss[first:])]
    if len(finite):  # the divergence at the end would squash the descent
        low, high = finite.min(), min(finite.max(), finite[0] + 2 * (finite[0] - finite.min()) + 1e-3)
        ax.set_ylim(low - 0.05 * (high - low), high + 0.05 * (high - low))
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    title = f"LR range test: {result.steps} of {result.asked} steps"
    if s.lr is None:
        title += f"; no suggestion: {s.why_none}"
    if s.lr is None and result.reason != s.why_none:
        title += f"\n{textwrap.fill(result.reason, 90)}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.14), frameon=False)
    ax.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    return figure
