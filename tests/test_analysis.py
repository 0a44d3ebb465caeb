"""Evaluation report numbers, sanity checks, diagnostics in TensorBoard, and the sweep report."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from pathlib import Path

import pytest
import torch
from helpers.cli import FAST, run_cli
from helpers.tb import load

from mnistlab.analysis.run_report import baselines, most_confused, per_class_scores
from mnistlab.analysis.sweep.aggregate import main_effects, seed_groups
from mnistlab.analysis.sweep.factors import Factors
from mnistlab.analysis.sweep.report import write_report


def test_per_class_scores_and_most_confused():
    confusion = torch.tensor([[8, 2, 0], [1, 6, 3], [0, 0, 10]])
    scores = per_class_scores(confusion)
    assert scores[0] == pytest.approx(
        {"precision": 8 / 9, "recall": 0.8, "f1": 2 * (8 / 9) * 0.8 / (8 / 9 + 0.8), "support": 10}
    )
    assert scores[2]["precision"] == pytest.approx(10 / 13) and scores[2]["recall"] == 1.0
    pairs = most_confused(confusion, ["a", "b", "c"])
    assert pairs == [
        {"true": "b", "predicted": "c", "count": 3},
        {"true": "a", "predicted": "b", "count": 2},
        {"true": "b", "predicted": "a", "count": 1},
    ]


def test_baselines_match_a_known_label_distribution():
    train = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    test = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    base = baselines(train, test, 3)
    assert base["majority"]["acc"] == pytest.approx(0.5)
    assert base["majority"]["f1"] == pytest.approx((2 * 0.5 / 1.5) / 3)
    assert base["majority"]["loss"] == pytest.approx(-(0.5 * math.log(0.6) + 0.3 * math.log(0.3) + 0.2 * math.log(0.1)))
    assert base["uniform"]["acc"] == pytest.approx(1 / 3) and base["uniform"]["loss"] == pytest.approx(math.log(3))
    expected_f1 = statistics.fmean(2 * p * (1 / 3) / (p + 1 / 3) for p in (0.5, 0.3, 0.2))
    assert base["uniform"]["f1"] == pytest.approx(expected_f1)


@pytest.fixture(scope="module")
def evaluated_run(tiny_data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("evaluated") / "run"
    # an untrained-ish model (5 steps) so that there are mistakes to report
    run_cli(
        "mnistlab.train",
        *FAST,
        "callbacks=diagnostics",
        "model=cnn_bn",
        "data=mnist_aug",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "optim=sgd",
        "optim.lr=0.001",
        "scheduler=none",
        f"hydra.run.dir={run_dir}",
        data_dir=tiny_data,
    )
    return run_dir


def test_run_report_files_and_numbers(evaluated_run):
    metrics = json.loads((evaluated_run / "metrics.json").read_text())
    with open(evaluated_run / "confusion_matrix.csv") as f:
        rows = list(csv.reader(f))[1:]
    confusion = torch.tensor([[int(v) for v in row[1:]] for row in rows])
    assert confusion.shape == (10, 10) and int(confusion.sum()) == 200 == metrics["test/samples"]
    assert confusion.diag().sum().item() / 200 == pytest.approx(metrics["test/acc"], abs=1e-6)
    with open(evaluated_run / "per_class.csv") as f:
        per_class = list(csv.DictReader(f))
    assert [int(r["support"]) for r in per_class] == [20] * 10
    assert metrics["baseline/majority_acc"] == pytest.approx(0.1) and metrics["baseline/uniform_acc"] == 0.1
    assert len(metrics["most_confused"]) <= 10
    report = (evaluated_run / "report.md").read_text()
    for section in (
        "majority class",
        "uniform random",
        "## Per-class scores",
        "## Most confused pairs",
        "confusion_matrix.png",
        "peak memory",
    ):
        assert section in report
    assert (evaluated_run / "confusion_matrix.png").stat().st_size > 5000
    if metrics["test/acc"] < 1:
        assert (evaluated_run / "misclassified.png").is_file() and "misclassified.png" in report


def test_sanity_checks_recorded(evaluated_run):
    metrics = json.loads((evaluated_run / "metrics.json").read_text())
    assert metrics["sanity/batch_shape"] == [32, 1, 28, 28]
    assert 0 <= metrics["sanity/batch_min"] < metrics["sanity/batch_max"] <= 1
    assert metrics["sanity/expected_initial_loss"] == pytest.approx(math.log(10), abs=1e-4)
    assert abs(metrics["sanity/initial_loss"] - math.log(10)) < 0.5 * math.log(10)


def test_diagnostics_in_tensorboard(evaluated_run):
    tags = load(evaluated_run).Tags()
    assert {
        "samples/train_augmented",
        "model/first_layer_filters",
        "model/feature_maps_block1",
        "model/feature_maps_block2",
        "data/class_distribution",
        "test/confusion_matrix",
    } <= set(tags["images"])
    assert any(t.startswith("weights/") for t in tags["histograms"])
    assert any(t.startswith("gradients/") for t in tags["histograms"])
    assert tags["graph"]


def test_overfit_preset_drives_the_loss_near_zero(tiny_data, tmp_path):
    run_cli(
        "mnistlab.train",
        "debug=overfit",
        "model=mlp",
        "trainer.overfit_batches=2",
        "trainer.max_epochs=30",
        "data.batch_size=32",
        "data.val_size=100",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={tmp_path}",
        data_dir=tiny_data,
    )
    assert load(tmp_path).Scalars("train/loss")[-1].value < 0.01


def _fake_run(sweep: Path, job: str, status: str, hparams: dict, acc: float | None, reason: str = "") -> None:
    (sweep / job / ".hydra").mkdir(parents=True)
    (sweep / job / ".hydra" / "overrides.yaml").write_text("".join(f"- {k}={v}\n" for k, v in hparams.items()))
    metrics = {"status": status, "hparams": {"model": "cnn", **hparams}}
    if acc is not None:
        metrics.update({"val/acc_best": acc, "test/acc": acc - 0.01, "val_curve": [acc - 0.1, acc]})
    if reason:
        metrics["reason"] = reason
    (sweep / job / "metrics.json").write_text(json.dumps(metrics))


def test_sweep_report_main_effects_and_seed_variance(tmp_path):
    accs = {
        ("sgd", "none", 1): 0.90,
        ("sgd", "none", 2): 0.92,
        ("sgd", "batch", 1): 0.95,
        ("sgd", "batch", 2): 0.97,
        ("adam", "none", 1): 0.96,
        ("adam", "none", 2): 0.94,
        ("adam", "batch", 1): 0.99,
    }
    for job, ((optim, norm, seed), acc) in enumerate(accs.items()):
        _fake_run(tmp_path, str(job), "completed", {"optim": optim, "norm": norm, "seed": seed}, acc)
    _fake_run(tmp_path, "7", "failed", {"optim": "adam", "norm": "batch", "seed": 2}, None, "LossDivergedError: nan")

    report = write_report(tmp_path).read_text()
    from mnistlab.analysis.runs import load_runs
    from mnistlab.analysis.sweep.factors import varying_factors

    runs = load_runs(tmp_path)
    factors = varying_factors(runs)
    assert factors == ["optim", "norm", "seed"]
    effects = main_effects(runs, factors)
    sgd = next(e for e in effects["optim"] if e["level"] == "sgd")
    assert sgd["mean"] == pytest.approx((0.90 + 0.92 + 0.95 + 0.97) / 4) and (sgd["min"], sgd["max"], sgd["n"]) == (
        0.90,
        0.97,
        4,
    )
    batch = next(e for e in effects["norm"] if e["level"] == "batch")
    assert batch["mean"] == pytest.approx((0.95 + 0.97 + 0.99) / 3)

    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["job"] for r in rows[:3]] == ["6", "3", "4"] and rows[-1]["status"] == "failed"
    assert "LossDivergedError: nan" in report and "## Main effects on val/acc_best" in report
    groups = seed_groups(runs, Factors(tmp_path, runs))
    sgd_none = next(g for g in groups if g["config"] == {"optim": "sgd", "norm": "none"})
    assert list(sgd_none["config"]) == ["optim", "norm"]  # seed groups are keyed in factor order
    estimate = sgd_none["val/acc_best"]
    assert (sgd_none["n"], estimate.mean, estimate.sd) == (2, pytest.approx(0.91), pytest.approx(0.0141, abs=1e-4))
    assert (tmp_path / "main_effects.png").is_file() and (tmp_path / "val_curves.png").is_file()


def test_report_cli(tmp_path, capsys):
    """mnistlab-report's main in this process (its own process: tests/test_catalogue.py)."""
    from mnistlab.report import main

    _fake_run(tmp_path, "0", "completed", {"optim": "sgd"}, 0.9)
    _fake_run(tmp_path, "1", "completed", {"optim": "adam"}, 0.95)
    assert main([str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.md")
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path / "0" / ".hydra")])
    assert stop.value.code == 2 and "is not a multirun dir" in capsys.readouterr().err


def _sweep_json(sweep: Path, swept: dict) -> None:
    (sweep / "sweep.json").write_text(json.dumps({"swept": swept}))


def test_the_report_tells_a_real_effect_from_noise(tmp_path):
    """optim has a large true effect (+0.02), norm none; seeds add noise of sd 0.002. The report must call optim
    a real difference and norm within noise, with intervals and Holm-corrected tests."""
    import numpy as np

    rng = np.random.default_rng(0)
    job = 0
    for optim in ("sgd", "adam"):
        for norm in ("none", "batch"):
            for seed in (1, 2, 3):
                acc = 0.95 + (0.02 if optim == "adam" else 0.0) + rng.normal(0, 0.002)
                hp = {"optim": optim, "norm": norm, "seed": seed, "lr": 0.001 if optim == "adam" else 0.05}
                _fake_run(tmp_path, str(job), "completed", hp, float(acc))
                job += 1
    _sweep_json(tmp_path, {"optim": ["sgd", "adam"], "model.norm": ["none", "batch"], "seed": [1, 2, 3]})
    report = write_report(tmp_path).read_text()
    assert "Factors varied: optim (lr), norm, seed." in report  # lr came with the optim preset
    assert "## Configurations over seeds and folds" in report and "[95 % interval]" in report
    assert "optim (lr) | adam − sgd |" in report and "paired t (6 pairs)" in report
    verdicts = [line for line in report.splitlines() if line.startswith("- ")]
    assert any(
        re.match(r"- optim: adam beats sgd by 0\.0(19|20|21)", v) and v.endswith("real difference.") for v in verdicts
    )
    assert any(v.startswith("- norm: batch vs none") and v.endswith("within noise.") for v in verdicts)
    assert "## Interaction of optim and norm" in report and (tmp_path / "interaction.png").is_file()


def test_without_replicates_the_report_makes_no_claim(tmp_path):
    for job, (optim, acc) in enumerate((("sgd", 0.95), ("adam", 0.97))):
        _fake_run(tmp_path, str(job), "completed", {"optim": optim, "seed": 42}, acc)
    _sweep_json(tmp_path, {"optim": ["sgd", "adam"]})
    report = write_report(tmp_path).read_text()
    assert "no claim of significance can be made" in report and "seed=1,2,3" in report
    assert "a real difference" not in report
