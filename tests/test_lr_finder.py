"""The LR finder's suggestion, its checks and its plot: synthetic loss curves, tiny data and one real-MNIST run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import REAL_DATA
from helpers.cli import FAST, run_cli

from mnistlab.training.lr_finder import DEFAULT_MAX_FACTOR, ended_early, judge, suggest_lr

BETA = 0.98  # Lightning's smoothing of the finder's loss


def sweep(points: int = 100, low: float = 1e-6, high: float = 1.0) -> np.ndarray:
    """The rates of an exponential sweep, as Lightning's finder steps them."""
    return low * (high / low) ** (np.arange(points) / (points - 1))


def descent(lrs: np.ndarray, centre: float, width: float = 0.5, top: float = 2.3, drop: float = 1.5) -> np.ndarray:
    """A loss that falls by ``drop`` around ``centre``: steepest against log10(lr) exactly at ``centre``."""
    x = np.log10(lrs)
    return top - drop / 2 * (1 + np.tanh((x - np.log10(centre)) / width))


def lightning_start(losses: np.ndarray) -> np.ndarray:
    """The start of the smoothed loss as Lightning's finder records it: bias-corrected one step too far, so that
    its first points read low (half the loss at the first point) and climb back over some 30 steps. (The
    smoothing's lag is left out, so that the analytic curve's steepest point stays where it is.)"""
    steps = np.arange(len(losses))
    return losses * (1 - BETA ** (steps + 1)) / (1 - BETA ** (steps + 2))


def nearest(lrs: np.ndarray, value: float) -> float:
    return float(lrs[np.argmin(np.abs(np.log10(lrs) - np.log10(value)))])


def test_steepest_descent_is_found_on_log_lr_where_the_linear_gradient_fails():
    lrs = sweep()
    centre = 3e-3
    losses = lightning_start(descent(lrs, centre, width=1.0))  # a descent over some three decades, as on MNIST
    # the independent answer: the analytic curve's inflection, on the sweep's grid
    assert suggest_lr(lrs, losses).lr == pytest.approx(nearest(lrs, centre), rel=0.2)
    # Lightning 2.6's suggestion differentiates against the linear lr: it lands decades too low
    from lightning.pytorch.tuner.lr_finder import _LRFinder

    finder = _LRFinder("exponential", 1e-6, 1.0, len(lrs))
    finder.results = {"lr": list(lrs), "loss": list(losses)}
    assert finder.suggestion() < centre / 10


def test_a_steep_start_is_skipped():
    """A start that falls steeply (the first points of a smoothed loss) would be the naive steepest descent."""
    lrs = sweep()
    losses = descent(lrs, 1e-2)
    losses[:8] += np.linspace(3.0, 0.0, 8)
    naive = int(np.argmin(np.gradient(losses, np.log10(lrs))))
    assert naive < 8
    result = suggest_lr(lrs, losses)
    assert result.first == 10 and result.index >= 10
    assert result.lr == pytest.approx(nearest(lrs, 1e-2), rel=0.2)


def test_the_descent_ends_at_the_minimum_and_divergence_is_ignored():
    lrs = sweep()
    losses = descent(lrs, 1e-3)
    explode = lrs > 0.1
    losses[explode] += 50 * (np.log10(lrs[explode]) + 1) ** 2  # diverges after 0.1
    losses[-3:] = np.nan
    result = suggest_lr(lrs, losses)
    assert lrs[result.last] <= 0.11
    assert result.lr == pytest.approx(nearest(lrs, 1e-3), rel=0.2)
    # numpy on the same points: the most negative slope before the minimum
    window = slice(result.first, result.last + 1)
    slopes = np.gradient(losses[window], np.log10(lrs[window]))
    assert result.index == result.first + int(np.argmin(slopes))


def test_a_loss_that_never_descends_gives_no_suggestion():
    lrs = sweep()
    losses = lightning_start(2.3 + 0.5 * np.log10(lrs / lrs[0]) / 6)
    result = suggest_lr(lrs, losses)
    assert result.lr is None and result.why_none == "the loss never descends"
    outcome = judge(lrs, losses, preset=3e-3, asked=100)
    assert not outcome.applied and outcome.lr == 3e-3
    assert outcome.record() == {
        "lr_find/suggestion": None,
        "lr_find/applied": False,
        "lr_find/reason": "the loss never descends",
        "lr_find/steps": 100,
    }


def test_a_close_suggestion_is_applied():
    lrs = sweep()
    outcome = judge(lrs, lightning_start(descent(lrs, 8e-3)), preset=3e-3, asked=100)
    assert outcome.applied and outcome.reason == ""
    assert outcome.lr == outcome.suggestion.lr == pytest.approx(nearest(lrs, 8e-3))


def test_a_far_suggestion_keeps_the_preset():
    lrs = sweep()
    losses = lightning_start(descent(lrs, 1.1e-4))
    outcome = judge(lrs, losses, preset=3e-3, asked=100)
    assert not outcome.applied and outcome.lr == 3e-3
    factor = 3e-3 / outcome.suggestion.lr
    assert 20 < factor < 35
    assert outcome.reason == f"{factor:.0f}x below the preset's 3e-03 (tune.max_factor=10)"
    assert judge(lrs, losses, preset=3e-3, asked=100, max_factor=30).applied  # the knob widens the check
    assert DEFAULT_MAX_FACTOR == 10


def test_a_suggestion_whose_loss_is_above_the_start_is_not_applied():
    lrs = sweep()
    losses = 2.0 + 2.0 / (1 + np.exp(-(np.log10(lrs) + 4) * 6))  # rises by 2 around 1e-4 …
    losses -= 2.5 / (1 + np.exp(-(np.log10(lrs) + 2.5) * 6))  # … then falls by 2.5 around 3e-3
    outcome = judge(lrs, losses, preset=3e-3, asked=100)
    assert outcome.suggestion.lr == pytest.approx(nearest(lrs, 3e-3), rel=0.2)
    assert not outcome.applied and "not below the loss at the start" in outcome.reason


def test_a_short_sweep_is_not_applied_but_a_diverged_one_is():
    lrs = sweep()
    losses = lightning_start(descent(lrs, 3e-3))
    short = judge(lrs[:60], losses[:60], preset=3e-3, asked=100)
    assert ended_early(losses[:60], 100) == "ran out of batches"
    assert not short.applied and short.lr == 3e-3
    assert short.reason.startswith("the data gave 60 of tune.num_training=100 steps (lr reached only 3.8e-03)")
    diverged = np.append(losses[:60], 5 * losses[:60].min())  # Lightning's stop rule: > 4x the best loss
    assert ended_early(diverged, 100) == "diverged"
    assert judge(lrs[:61], diverged, preset=3e-3, asked=100).applied


def test_fewer_batches_than_num_training_says_so_and_keeps_the_preset(tiny_data, tmp_path):
    """Tiny data gives 16 batches an epoch: the sweep stops there, and the log says why, not "diverging"."""
    result = run_cli(
        "mnistlab.train",
        *FAST,
        "model=mlp",
        "data=mnist",
        "trainer.max_epochs=1",
        "tune.lr_find=true",
        "tune.num_training=100",
        "test=false",
        f"hydra.run.dir={tmp_path}",
        data_dir=tiny_data,
    )
    output = result.stdout + result.stderr
    assert "the data gave 16 of tune.num_training=100 steps" in output and "keeping 3e-03" in output
    assert "diverging loss" not in output
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["lr_find/applied"] is False and metrics["lr_find/steps"] == 16
    assert metrics["lr"] == pytest.approx(3e-3) and metrics["hparams"]["lr"] == pytest.approx(3e-3)
    assert (tmp_path / "lr_find.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(), reason=f"no real MNIST in {REAL_DATA}")
def test_lr_find_end_to_end_on_real_mnist(tmp_path):
    run_cli(
        "mnistlab.train",
        "model=mlp",
        "data=mnist",
        "ema.decay=null",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=60",
        "trainer.limit_val_batches=5",
        "trainer.num_sanity_val_steps=0",
        "callbacks.progress_bar=null",
        "tune.lr_find=true",
        "tune.num_training=50",
        "test=false",
        f"hydra.run.dir={tmp_path}",
        data_dir=REAL_DATA,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["lr_find/steps"] == 50
    assert isinstance(metrics["lr_find/applied"], bool)
    applied = metrics["lr_find/suggestion"] if metrics["lr_find/applied"] else 3e-3
    assert metrics["lr"] == pytest.approx(applied) and metrics["hparams"]["lr"] == pytest.approx(applied)
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    assert not list(tmp_path.glob(".lr_find_*.ckpt"))


def test_max_factor_is_a_checked_knob():
    from mnistlab.core.errors import ConfigError
    from mnistlab.core.fields import check

    assert check("tune.max_factor", 10) == 10
    with pytest.raises(ConfigError, match=r"tune.max_factor=0.5 must be >= 1"):
        check("tune.max_factor", 0.5)
