"""The sweep's statistics against scipy and statsmodels on fixed data; what the report and the closing line
claim from them (directions, "cannot tell", paired or Welch, the best configuration); baselines on the images
a model was tested on."""

from __future__ import annotations

import json
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats

from mnistlab.analysis.run_report import baselines, labels_tested, write_evaluation
from mnistlab.analysis.statistics import (
    UNIT,
    Comparison,
    compare_levels,
    holm,
    interval,
    matched_pairs,
    metric_bounds,
    oriented,
    t_interval,
    verdict,
)

LOSSES = [0.31, 0.27, 0.35, 0.29, 0.33]
SGD = {1: 0.9612, 2: 0.9655, 3: 0.9641, 4: 0.9630}
ADAMW = {1: 0.9702, 2: 0.9688, 5: 0.9731, 6: 0.9699}


def _points(table: dict[tuple[Any, ...], float], names: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"x": dict(zip(names, key, strict=True)), "y": y} for key, y in table.items()]


# -- intervals -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [LOSSES, LOSSES[:2], [2.5, 2.5, 2.6]])
def test_t_interval_matches_scipy_and_statsmodels(values):
    weightstats = pytest.importorskip("statsmodels.stats.weightstats")
    sem = statistics.stdev(values) / math.sqrt(len(values))
    expected = stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values), scale=sem)
    assert t_interval(values) == pytest.approx(expected, rel=1e-12)
    assert t_interval(values) == pytest.approx(weightstats.DescrStatsW(values).tconfint_mean(0.05), rel=1e-12)
    estimate = interval(values, bounds=metric_bounds("test/loss"))  # a loss has no bounds: the t interval as is
    assert (estimate.low, estimate.high) == pytest.approx(expected, rel=1e-12) and not estimate.clipped
    assert estimate.sd == pytest.approx(statistics.stdev(values)) and estimate.n == len(values)


def test_one_run_or_no_spread_has_no_interval():
    one = interval([0.97], bounds=UNIT)
    assert (one.mean, one.n, one.sd, one.low, one.high, one.has_interval) == (0.97, 1, None, None, None, False)
    # equal up to float32 rounding: no estimate of the noise, not a zero-width interval
    same = interval([float(np.float32(0.9712)), 0.9712, 0.9712], bounds=UNIT)
    assert same.sd == 0.0 and not same.has_interval and same.mean == pytest.approx(0.9712)


@pytest.mark.parametrize("values", [[0.9701, 0.9950], [0.998, 1.0], [0.991, 0.999, 1.0], [0.02, 0.0]])
def test_accuracy_intervals_stay_within_0_and_1(values):
    estimate = interval(values, bounds=metric_bounds("val/acc_best"))
    low, high = stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values), scale=stats.sem(values))
    assert 0.0 <= estimate.low <= estimate.mean <= estimate.high <= 1.0
    assert estimate.clipped  # the t interval reached past a bound: flagged
    assert estimate.low == pytest.approx(max(low, 0.0)) and estimate.high == pytest.approx(min(high, 1.0))


def test_an_interval_inside_the_bounds_is_not_flagged():
    values = [0.9612, 0.9655, 0.9641, 0.9630]
    estimate = interval(values, bounds=metric_bounds("test/acc"))
    assert not estimate.clipped and (estimate.low, estimate.high) == pytest.approx(t_interval(values))


def test_metric_bounds():
    assert metric_bounds("val/acc_best") == metric_bounds("test/f1") == (0.0, 1.0)
    assert metric_bounds("test/loss") is None and metric_bounds("train_time_s") is None


# -- Holm ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pvalues", [[0.01, 0.04, 0.03, 0.005], [0.02, 0.02, 0.5], [0.3], [0.0001, 0.9, 0.9, 0.04], [0.6, 0.7]]
)
def test_holm_matches_statsmodels(pvalues):
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    _, expected, _, _ = multitest.multipletests(pvalues, alpha=0.05, method="holm")
    assert holm(pvalues) == pytest.approx(list(expected), rel=1e-12)


# -- paired and Welch ----------------------------------------------------------------------------------------


def test_a_fully_crossed_design_is_paired_like_scipy_and_statsmodels():
    weightstats = pytest.importorskip("statsmodels.stats.weightstats")
    adam = {1: 0.9712, 2: 0.9688, 3: 0.9731}
    sgd = {1: 0.9650, 2: 0.9662, 3: 0.9641}
    table = {**{("adam", s): y for s, y in adam.items()}, **{("sgd", s): y for s, y in sgd.items()}}
    (c,) = compare_levels(_points(table, ("optim", "seed")), "optim", ["seed"], UNIT)
    xs, ys = [adam[s] for s in (1, 2, 3)], [sgd[s] for s in (1, 2, 3)]
    expected = stats.ttest_rel(xs, ys)
    differences = weightstats.DescrStatsW(np.subtract(xs, ys))
    assert (c.a, c.b, c.test) == ("adam", "sgd", "paired t (3 pairs)")
    assert c.difference == pytest.approx(statistics.fmean(xs) - statistics.fmean(ys))
    assert c.p == pytest.approx(expected.pvalue, rel=1e-9) and c.p == pytest.approx(differences.ttest_mean()[1])
    assert (c.low, c.high) == pytest.approx(differences.tconfint_mean(0.05), rel=1e-9)
    assert c.p_holm == pytest.approx(c.p)  # one comparison: Holm changes nothing


def test_two_pairs_with_unequal_differences_are_tested_on_one_degree_of_freedom():
    table = {("a", 1): 0.95, ("a", 2): 0.97, ("b", 1): 0.93, ("b", 2): 0.94}
    (c,) = compare_levels(_points(table, ("optim", "seed")), "optim", ["seed"], UNIT)
    assert c.test == "paired t (2 pairs)"
    assert c.p == pytest.approx(stats.ttest_rel([0.95, 0.97], [0.93, 0.94]).pvalue, rel=1e-9)


def test_a_partially_crossed_design_uses_welch_on_every_run():
    """sgd ran seeds 1–4, adamw seeds 1, 2, 5, 6: two matched seeds only, so no pairing: Welch on all 8 runs."""
    weightstats = pytest.importorskip("statsmodels.stats.weightstats")
    table = {**{("sgd", s): y for s, y in SGD.items()}, **{("adamw", s): y for s, y in ADAMW.items()}}
    points = _points(table, ("optim", "seed"))
    assert matched_pairs(points, "optim", "adamw", "sgd", ["seed"]) is None
    (c,) = compare_levels(points, "optim", ["seed"], UNIT)
    ya, yb = list(ADAMW.values()), list(SGD.values())
    expected = stats.ttest_ind(ya, yb, equal_var=False)
    means = weightstats.CompareMeans.from_data(ya, yb)
    assert (c.a, c.b, c.test) == ("adamw", "sgd", "Welch t (4 vs 4 runs)")
    assert c.difference == pytest.approx(statistics.fmean(ya) - statistics.fmean(yb))
    assert c.p == pytest.approx(expected.pvalue, rel=1e-9)
    assert c.p == pytest.approx(means.ttest_ind(usevar="unequal")[1], rel=1e-9)
    assert (c.low, c.high) == pytest.approx(means.tconfint_diff(alpha=0.05, usevar="unequal"), rel=1e-9)


def test_a_crossed_design_with_one_missing_run_uses_welch():
    table = {("a", s): 0.95 + 0.01 * s for s in (1, 2, 3)} | {("b", s): 0.94 + 0.012 * s for s in (1, 2)}
    (c,) = compare_levels(_points(table, ("optim", "seed")), "optim", ["seed"], UNIT)
    assert c.test == "Welch t (3 vs 2 runs)"
    assert c.p == pytest.approx(stats.ttest_ind([0.96, 0.97, 0.98], [0.952, 0.964], equal_var=False).pvalue)


def test_duplicated_settings_never_pair_arbitrarily():
    """Two runs of b with seed 1 (a sweep run twice into one dir): either could pair with a's seed 1."""
    points = [
        {"x": {"optim": "a", "seed": 1}, "y": 0.95},
        {"x": {"optim": "a", "seed": 2}, "y": 0.96},
        {"x": {"optim": "b", "seed": 1}, "y": 0.93},
        {"x": {"optim": "b", "seed": 1}, "y": 0.91},
        {"x": {"optim": "b", "seed": 2}, "y": 0.94},
    ]
    assert matched_pairs(points, "optim", "a", "b", ["seed"]) is None
    (c,) = compare_levels(points, "optim", ["seed"], UNIT)
    assert c.test == "Welch t (2 vs 3 runs)"
    assert c.p == pytest.approx(stats.ttest_ind([0.95, 0.96], [0.93, 0.91, 0.94], equal_var=False).pvalue)


def test_a_pair_missing_on_the_other_factor_is_welch():
    """adam ran only with norm=batch: the optim comparison cannot be matched on norm."""
    table = {
        ("sgd", "none", 1): 0.90,
        ("sgd", "none", 2): 0.92,
        ("sgd", "batch", 1): 0.95,
        ("sgd", "batch", 2): 0.97,
        ("adam", "batch", 1): 0.99,
        ("adam", "batch", 2): 0.98,
    }
    (c,) = compare_levels(_points(table, ("optim", "norm", "seed")), "optim", ["norm", "seed"], UNIT)
    assert c.test == "Welch t (2 vs 4 runs)"


# -- cannot tell ---------------------------------------------------------------------------------------------


def test_equal_paired_differences_cannot_tell():
    """Both differences 0.0062 (exactly, or up to float32 rounding): scipy's paired t says p = 0 (or nan)."""
    a = [float(np.float32(0.9712)), float(np.float32(0.9700))]
    b = [float(np.float32(0.9650)), float(np.float32(0.9638))]
    table = {("adam", 1): a[0], ("adam", 2): a[1], ("sgd", 1): b[0], ("sgd", 2): b[1]}
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        scipy_p = stats.ttest_rel(a, b).pvalue
    assert scipy_p < 1e-3 or math.isnan(scipy_p)  # what a report would have called a real difference
    (c,) = compare_levels(_points(table, ("optim", "seed")), "optim", ["seed"], UNIT)
    assert c.p is None and c.p_holm is None and c.low is None and not c.significant
    assert c.difference == pytest.approx(0.0062, abs=1e-6)
    sentence = verdict(c, "val/acc_best")
    assert "cannot tell" in sentence and "all 2 paired differences are equal: no estimate of the noise" in sentence
    assert "real difference" not in sentence and "within noise" not in sentence


def test_all_zero_differences_and_equal_welch_groups_cannot_tell():
    table = {("a", 1): 0.97, ("a", 2): 0.96, ("b", 1): 0.97, ("b", 2): 0.96}
    (paired,) = compare_levels(_points(table, ("optim", "seed")), "optim", ["seed"], UNIT)
    assert paired.p is None and paired.difference == 0.0
    table = {("a", 1): 0.97, ("a", 2): 0.97, ("b", 3): 0.95, ("b", 4): 0.95}
    (welch,) = compare_levels(_points(table, ("optim", "seed")), "optim", ["seed"], UNIT)
    assert welch.test == "Welch t (2 vs 2 runs)" and welch.p is None and "all equal" in welch.reason


def test_too_few_runs_cannot_tell_and_stays_out_of_holm():
    points = _points(
        {
            ("a", 1): 0.95,
            ("a", 2): 0.96,
            ("a", 3): 0.955,
            ("b", 1): 0.93,
            ("b", 2): 0.925,
            ("b", 3): 0.94,
            ("c", 4): 0.90,
        },
        ("optim", "seed"),
    )
    found = {(c.a, c.b): c for c in compare_levels(points, "optim", ["seed"], UNIT)}
    assert found["a", "c"].p is None and found["b", "c"].p is None
    assert "only 1 run at c" in found["a", "c"].reason
    tested = found["a", "b"]
    assert tested.p_holm == pytest.approx(tested.p)  # the family is the one comparison that was tested
    assert "cannot tell" in verdict(found["a", "c"], "val/acc_best")


# -- verdict direction ---------------------------------------------------------------------------------------


def test_the_winner_comes_first_with_a_positive_difference_and_interval():
    c = Comparison("optim", "adam", "sgd", -0.0055, -0.0107, -0.0003, 0.004, "paired t (4 pairs)", p_holm=0.004)
    winner, loser, difference, low, high = oriented(c)
    assert (winner, loser) == ("sgd", "adam")
    assert difference == pytest.approx(0.0055) and (low, high) == pytest.approx((0.0003, 0.0107))
    assert 0 < low <= difference <= high
    assert verdict(c, "val/acc_best").startswith(
        "optim: sgd beats adam by 0.0055 val/acc_best (95 % CI +0.0003 to +0.0107, Holm p = 0.004"
    )
    c = Comparison("optim", "adam", "sgd", 0.0055, 0.0003, 0.0107, 0.004, "paired t (4 pairs)", p_holm=0.004)
    assert verdict(c, "val/acc_best").startswith("optim: adam beats sgd by 0.0055 val/acc_best (95 % CI +0.0003")


def test_compared_and_worded_in_one_direction():
    """The level sorted first (adam) loses: the sentence names sgd first, and so do its numbers."""
    table = {("adam", s): 0.95 + 0.001 * s for s in (1, 2, 3, 4)} | {
        ("sgd", s): 0.96 + 0.0012 * s + 0.0005 * (s % 2) for s in (1, 2, 3, 4)
    }
    (c,) = compare_levels(_points(table, ("optim", "seed")), "optim", ["seed"], UNIT)
    assert c.significant and c.difference < 0 and c.high < 0
    winner, _, difference, low, high = oriented(c)
    assert winner == "sgd" and 0 < low < difference < high
    assert f"sgd beats adam by {difference:.4f} val/acc_best (95 % CI +{low:.4f} to +{high:.4f}" in verdict(
        c, "val/acc_best"
    )


# -- the sweep dir: report and best line ---------------------------------------------------------------------


def _fake_run(sweep: Path, job: str, hparams: dict[str, Any], acc: float | None, status: str = "completed") -> None:
    (sweep / job / ".hydra").mkdir(parents=True)
    (sweep / job / ".hydra" / "overrides.yaml").write_text("".join(f"- {k}={v}\n" for k, v in hparams.items()))
    metrics: dict[str, Any] = {"status": status, "hparams": {"model": "cnn", **hparams}}
    if acc is not None:
        metrics.update({"val/acc_best": acc, "test/acc": acc - 0.001, "val_curve": [acc - 0.1, acc]})
    (sweep / job / "metrics.json").write_text(json.dumps(metrics))


def _sweep(sweep: Path, table: dict[tuple[str, int], float]) -> None:
    for job, ((optim, seed), acc) in enumerate(table.items()):
        _fake_run(sweep, str(job), {"optim": optim, "seed": seed}, acc)
    seeds = sorted({seed for _, seed in table})
    (sweep / "sweep.json").write_text(json.dumps({"swept": {"optim": ["sgd", "adam"], "seed": seeds}}))


def test_the_best_line_names_the_best_configuration_over_its_seeds(tmp_path):
    from mnistlab.training.sweep import _best

    # sgd has the single best run (seed 2), adam the best mean
    table = {("sgd", 1): 0.9600, ("sgd", 2): 0.9950, ("sgd", 3): 0.9610}
    table |= {("adam", 1): 0.9900, ("adam", 2): 0.9921, ("adam", 3): 0.9915}
    _sweep(tmp_path, table)
    line = _best(tmp_path)
    mean = statistics.fmean([0.9900, 0.9921, 0.9915])
    assert line == (
        f"best: optim=adam (mean val/acc_best {mean:.4f} over 3 seeds; its best job 4: val/acc_best 0.9921, "
        "test/acc 0.9911)"
    )


def test_the_best_line_without_replicates_names_the_best_job(tmp_path):
    from mnistlab.training.sweep import _best

    for job, (optim, acc) in enumerate((("sgd", 0.95), ("adam", 0.97))):
        _fake_run(tmp_path, str(job), {"optim": optim}, acc)
    (tmp_path / "sweep.json").write_text(json.dumps({"swept": {"optim": ["sgd", "adam"]}}))
    assert _best(tmp_path) == "best: optim=adam (job 1): val/acc_best 0.9700, test/acc 0.9690"


def test_the_report_of_a_partially_crossed_sweep(tmp_path):
    from mnistlab.analysis.runs import load_runs
    from mnistlab.analysis.sweep.aggregate import comparisons, seed_groups
    from mnistlab.analysis.sweep.factors import Factors
    from mnistlab.analysis.sweep.report import write_report

    table = {("sgd", s): y for s, y in SGD.items()} | {("adamw", s): y for s, y in ADAMW.items()}
    _sweep(tmp_path, table)
    assert (tmp_path / "report.md") == write_report(tmp_path)
    runs = load_runs(tmp_path)
    (c,) = comparisons(runs, Factors(tmp_path, runs))
    assert (c.factor, c.a, c.b, c.test) == ("optim", "adamw", "sgd", "Welch t (4 vs 4 runs)")
    assert c.difference == pytest.approx(statistics.fmean(ADAMW.values()) - statistics.fmean(SGD.values()))
    for group in seed_groups(runs, Factors(tmp_path, runs)):
        estimate = group["val/acc_best"]
        assert estimate.n == 4 and 0.0 <= estimate.low <= estimate.high <= 1.0


def test_the_report_says_cannot_tell_for_equal_differences(tmp_path):
    from mnistlab.analysis.sweep.report import write_report

    _sweep(tmp_path, {("sgd", 1): 0.9650, ("sgd", 2): 0.9638, ("adam", 1): 0.9712, ("adam", 2): 0.9700})
    report = write_report(tmp_path).read_text()
    assert "cannot tell" in report and "a real difference" not in report
    assert "all 2 paired differences are equal: no estimate of the noise; add seeds" in report


def test_configurations_near_1_and_of_one_run(tmp_path):
    from mnistlab.analysis.runs import load_runs
    from mnistlab.analysis.sweep.aggregate import main_effects, seed_groups
    from mnistlab.analysis.sweep.factors import Factors

    _sweep(tmp_path, {("sgd", 1): 0.9218, ("sgd", 2): 0.9950, ("adam", 1): 0.9900})
    runs = load_runs(tmp_path)
    groups = {g["config"]["optim"]: g["val/acc_best"] for g in seed_groups(runs, Factors(tmp_path, runs))}
    assert groups["sgd"].clipped and groups["sgd"].high == 1.0 and groups["sgd"].low >= 0.0
    assert groups["adam"].n == 1 and not groups["adam"].has_interval
    effects = {e["level"]: e for e in main_effects(runs, ["optim"])["optim"]}
    assert effects["sgd"]["high"] == 1.0 and effects["sgd"]["clipped"] and not effects["adam"]["interval"]


# -- baselines -----------------------------------------------------------------------------------------------


def test_labels_tested_are_the_rows_of_the_confusion_matrix():
    confusion = torch.tensor([[3, 1, 0], [0, 0, 0], [1, 0, 4]])
    assert labels_tested(confusion).tolist() == [0] * 4 + [2] * 5


def test_baselines_are_scored_on_the_images_tested(tmp_path):
    """The train split's majority class is 0; it is half of the whole test split but a fifth of the 2,000 images
    the model was tested on (``trainer.limit_test_batches``)."""
    train = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    tested = torch.tensor([0] * 400 + [1] * 1000 + [2] * 600)
    confusion = torch.zeros(3, 3, dtype=torch.long)
    for label in range(3):
        confusion[label, label] = int((tested == label).sum())
    summary = write_evaluation(
        tmp_path, {"confusion": confusion}, ["0", "1", "2"], train, {"test/acc": 1.0, "hparams": {}}
    )
    expected = baselines(train, tested, 3)
    assert summary["test/samples"] == 2000
    assert summary["baseline/majority_acc"] == pytest.approx(0.2) == expected["majority"]["acc"]
    assert baselines(train, torch.tensor([0] * 5000 + [1] * 5000), 3)["majority"]["acc"] == 0.5  # the whole split
