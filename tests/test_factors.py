"""A sweep's factors are what the user swept: two presets of a group are two levels in the run records, the
report and runs.csv; parameters searched over a range are plotted and regressed, not compared as levels."""

from __future__ import annotations

import csv
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import needs

from mnistlab.analysis.runs import load_runs
from mnistlab.analysis.sweep.aggregate import continuous_effects, interaction, main_effects
from mnistlab.analysis.sweep.factors import Factors
from mnistlab.analysis.sweep.report import write_report
from mnistlab.core.factors import write_sweep_file

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "mnistlab" / "conf")
# two presets of every group that has several; the pairs that share a dataset or a model class are the risk
PRESETS = {
    "data": ("mnist", "mnist_aug"),
    "model": ("cnn", "cnn_small"),
    "optim": ("sgd", "adam"),
    "scheduler": ("none", "cosine"),
    "trainer": ("cpu", "default"),
}


def _write_job(sweep: Path, job: int, overrides: list[str], hparams: dict, acc: float) -> None:
    (sweep / str(job) / ".hydra").mkdir(parents=True)
    (sweep / str(job) / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    record = {"status": "completed", "hparams": hparams, "val/acc_best": acc, "test/acc": acc}
    (sweep / str(job) / "metrics.json").write_text(json.dumps(record))


def test_two_presets_of_every_group_are_two_levels(tmp_path):
    """The run record of each job of a 2^5 sweep over presets, as training writes it (composed by Hydra, recorded
    by ``sweep_hparams``), then the sweep report: every group has its two presets as levels."""
    from hydra import compose, initialize_config_dir

    from mnistlab.training.hparams import sweep_hparams

    sweep_args = [f"{group}={','.join(presets)}" for group, presets in PRESETS.items()]
    write_sweep_file(tmp_path, sweep_args, None)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        for job, chosen in enumerate(itertools.product(*PRESETS.values())):
            overrides = [f"{group}={preset}" for group, preset in zip(PRESETS, chosen, strict=True)]
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            hparams = sweep_hparams(cfg, dict(cfg.hydra.runtime.choices), float(cfg.optim.lr))
            assert [hparams[group] for group in PRESETS] == list(chosen)
            _write_job(tmp_path, job, overrides, hparams, 0.9 + 0.001 * job)

    write_report(tmp_path)
    runs = load_runs(tmp_path)
    factors = Factors(tmp_path, runs)
    assert factors.names[: len(PRESETS)] == list(PRESETS) and not factors.relevelled
    effects = main_effects(runs, factors.levelled)
    for group, presets in PRESETS.items():
        assert [e["level"] for e in effects[group]] == sorted(presets) and {e["n"] for e in effects[group]} == {16}
    with open(tmp_path / "runs.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["data"] for r in rows} == {"mnist", "mnist_aug"} and {r["model"] for r in rows} == {"cnn", "cnn_small"}


def test_records_that_merged_two_presets_are_split_by_their_command_lines(tmp_path):
    """Records written before the data column held the preset (``mnist`` for data=mnist_aug too): the report takes
    the levels from the command lines and says so, instead of pooling augmented and plain runs."""
    write_sweep_file(tmp_path, ["data=mnist,mnist_aug", "seed=1,2"], None)
    for job, (data, seed) in enumerate(itertools.product(("mnist", "mnist_aug"), (1, 2))):
        acc = 0.95 + (0.02 if data == "mnist_aug" else 0.0) + 0.001 * seed
        _write_job(tmp_path, job, [f"data={data}", f"seed={seed}"], {"data": "mnist", "seed": seed}, acc)
    report = write_report(tmp_path).read_text()
    runs = load_runs(tmp_path)
    factors = Factors(tmp_path, runs)
    assert factors.relevelled == ["data"] and factors.config == ["data"]
    assert [(e["level"], e["n"]) for e in main_effects(runs, ["data"])["data"]] == [("mnist", 2), ("mnist_aug", 2)]
    assert "fewer levels of data than their command lines" in report and "data=mnist_aug" in report


def _search_dir(sweep: Path, n: int, seed: int = 0) -> list[tuple[float, float, float]]:
    """A fake search of ``n`` completed trials: val/acc_best rises 0.02 per decade of lr, dropout does nothing,
    plus noise; each trial its own lr, weight decay and dropout, and a categorical optim."""
    rng = np.random.default_rng(seed)
    space = {
        "optim": {"type": "categorical", "choices": ["sgd", "adam"]},
        "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "optim.weight_decay": {"type": "float", "low": 1e-6, "high": 1e-2, "log": True},
        "model.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    }
    write_sweep_file(sweep, [], space)
    points, trials = [], []
    for job in range(n):
        lr, wd, dropout = 10 ** rng.uniform(-4, -1), 10 ** rng.uniform(-6, -2), rng.uniform(0, 0.5)
        optim = "sgd" if job % 2 else "adam"
        acc = float(0.95 + 0.0133 * (math.log10(lr) + 2.5) + rng.normal(0, 0.002))
        params = {"optim": optim, "optim.lr": lr, "optim.weight_decay": wd, "model.dropout": dropout}
        overrides = [f"{k}={v}" for k, v in params.items()]
        hparams = {"optim": optim, "lr": lr, "weight_decay": wd, "dropout": dropout, "model": "cnn", "seed": 42}
        _write_job(sweep, job, overrides, hparams, acc)
        trials.append({"number": job, "state": "COMPLETE", "value": acc, "params": params})
        points.append((lr, dropout, acc))
    search = {"objective": "val/acc_best", "direction": "maximize", "trials": trials}
    (sweep / "search.json").write_text(json.dumps(search))
    return points


def test_a_search_regresses_continuous_parameters_against_an_independent_fit(tmp_path):
    points = _search_dir(tmp_path, 16)
    report = write_report(tmp_path).read_text()
    runs = load_runs(tmp_path)
    factors = Factors(tmp_path, runs)
    assert set(factors.continuous) == {"lr", "weight_decay", "dropout"} and factors.scales["lr"] == "log"
    assert factors.levelled == ["optim"]  # 8 trials at each of its two values
    assert "lr" not in main_effects(runs, factors.levelled) and interaction(runs, factors) is None

    effects = continuous_effects(runs, factors)
    x = np.log10([p[0] for p in points])
    y = np.array([p[2] for p in points])
    slope, _ = np.polyfit(x, y, 1)  # independent least squares on log10(lr)
    residual = y - np.polyval(np.polyfit(x, y, 1), x)
    stderr = math.sqrt(residual @ residual / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean())))
    from scipy import stats

    half = stats.t.ppf(0.975, len(x) - 2) * stderr
    lr = effects["lr"]
    assert lr["slope"] == pytest.approx(slope) and (lr["low"], lr["high"]) == pytest.approx(
        (slope - half, slope + half)
    )
    assert lr["low"] < 0.0133 < lr["high"]  # the true slope per decade
    assert effects["dropout"]["low"] < 0 < effects["dropout"]["high"]  # no effect: cannot tell
    assert lr["rho"] == pytest.approx(stats.spearmanr(x, y).statistic)

    assert "higher lr went with higher val/acc_best" in report and "cannot tell (the interval holds 0)" in report
    assert (tmp_path / "searched_parameters.png").is_file()
    assert "0.0000 " not in report and "| 0.0000 |" not in report  # weight decays of 1e-6 keep their digits


def test_a_small_search_shows_no_levels_and_no_slope(tmp_path):
    _search_dir(tmp_path, 5)
    report = write_report(tmp_path).read_text()
    runs = load_runs(tmp_path)
    factors = Factors(tmp_path, runs)
    assert factors.levelled == ["optim"]  # 3 and 2 trials: levels with replicates
    assert set(main_effects(runs, factors.levelled)) == {"optim"}  # each lr its own "level" no more
    assert "## Interaction" not in report
    assert "cannot tell: 5 runs (a slope needs 10)" in report


def test_the_hparams_row_and_the_override_keys_come_from_one_table():
    """Each override key that sets a column names that column; a key without one names itself."""
    from mnistlab.core.columns import HPARAM_COLUMNS, HPARAM_OF
    from mnistlab.core.factors import hparam_name
    from mnistlab.training.hparams import BASE_TYPES

    assert list(BASE_TYPES) == [c.name for c in HPARAM_COLUMNS]
    assert all(hparam_name(key) == column.name for column in HPARAM_COLUMNS for key in column.keys)
    assert hparam_name("optim.lr") == "lr" and hparam_name("model.channels") == "model.channels"
    assert len(HPARAM_OF) == sum(len(c.keys) for c in HPARAM_COLUMNS)  # no key sets two columns


def test_the_metric_columns_come_from_one_table(tmp_path):
    """The HParams metrics, the sweep report's columns and what it ranks by are rows of METRICS; a detector's
    column shows only when a run has it."""
    from mnistlab.analysis.sweep.report import report_columns
    from mnistlab.core.columns import METRICS, RANK_BY
    from mnistlab.training.hparams import HPARAM_METRICS

    assert HPARAM_METRICS == ("val/acc_best", "test/acc", "test/f1", "test/loss") and RANK_BY in HPARAM_METRICS
    plain = [{"metrics": {"val/acc_best": 0.9}}]
    assert "test/map" not in dict(report_columns(plain))
    assert dict(report_columns([{"metrics": {"test/map": 0.5}}]))["test/map"] == "test mAP@[.5:.95]"
    assert [tag for tag, _ in report_columns(plain)] == [m.tag for m in METRICS if m.title and not m.optional]


@needs("optuna")
def test_importances_are_computed_for_a_conditional_space_and_named():
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from mnistlab.search.sweeper import param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    rng = np.random.default_rng(0)
    for number in range(5):
        optim = ("sgd_momentum", "adamw")[number % 2]
        params = {"optim": optim, "optim.lr": float(10 ** rng.uniform(-4, -1)), "model.dropout": float(rng.uniform())}
        dists = {
            "optim": CategoricalDistribution(["sgd_momentum", "adamw"]),
            "optim.lr": FloatDistribution(1e-4, 0.1, log=True),
            "model.dropout": FloatDistribution(0.0, 1.0),
        }
        if optim == "sgd_momentum":  # searched only with this optimizer
            params["optim.momentum"], dists["optim.momentum"] = 0.9, FloatDistribution(0.8, 0.99)
        value = 0.9 + 0.05 * params["model.dropout"]
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
        if number == 1:
            assert param_importances(study) is None  # two trials: nothing to say
    importances, method = param_importances(study)
    assert set(importances) == {"optim", "optim.lr", "model.dropout"} and method.startswith("fANOVA")
    assert max(importances, key=importances.get) == "model.dropout"
