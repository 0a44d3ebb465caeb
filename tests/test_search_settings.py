"""What Optuna is asked to do, named rather than left to its defaults (Optuna 5 changed TPE's and the importance
evaluator's): the YAML's TPE settings reach the sampler, a setting no sampler takes is one line, and the
report's importance column names the evaluator that computed the numbers, checked against Optuna's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import needs

from mnistlab.core.config import CONFIG_DIR
from mnistlab.core.errors import ConfigError

pytestmark = needs("optuna")

TPE_KEYS = ("multivariate", "group", "constant_liar", "n_startup_trials")


def _sweeper(sweep_dir: Path, **settings):
    from omegaconf import OmegaConf

    from mnistlab.search.sweeper import OptunaSweeper

    sweeper = OptunaSweeper(**settings)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})
    sweeper.sweep_dir = sweep_dir
    return sweeper


def _written(path: str) -> dict:
    """The sampler block as the YAML file says it, read as plain YAML (not through mnistlab)."""
    data = yaml.safe_load((Path(CONFIG_DIR) / path).read_text())
    return data["hydra"]["sweeper"]["sampler"] if "hydra" in data else data["sampler"]


def test_the_yaml_tpe_settings_reach_optuna(monkeypatch, tmp_path):
    import optuna
    from hydra import compose, initialize_config_dir

    from mnistlab.search.space import parse_space
    from mnistlab.search.sweeper import OptunaSweeper

    preset = _written("hparams_search/optuna.yaml")
    assert preset == _written("hydra/sweeper/mnistlab_optuna.yaml")  # the sweeper's defaults say the same
    assert set(TPE_KEYS) <= set(preset) and preset["name"] == "tpe"

    received: list[dict] = []

    class Recording(optuna.samplers.TPESampler):
        def __init__(self, **kwargs):
            received.append(kwargs)
            super().__init__(**kwargs)

    monkeypatch.setattr(optuna.samplers, "TPESampler", Recording)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", ["hparams_search=optuna", "hydra.sweeper.sampler.seed=7"], return_hydra_config=True)
    settings = {k: v for k, v in cfg.hydra.sweeper.items() if k != "_target_"}
    sweeper = OptunaSweeper(**settings)
    sweeper.sweep_dir = tmp_path
    sampler = sweeper._sampler(parse_space(sweeper.params, [])[0])

    expected = {k: preset[k] for k in TPE_KEYS}
    assert received == [{**expected, "seed": 7}]
    # and Optuna took them (its own attributes, as it keeps them in both 4.x and 5.x)
    assert (sampler._multivariate, sampler._constant_liar, sampler._n_startup_trials) == (
        expected["multivariate"],
        expected["constant_liar"],
        expected["n_startup_trials"],
    )


def test_a_sampler_block_without_tpe_settings_gets_mnistlabs_not_optunas():
    from mnistlab.search.sweeper import TPE_DEFAULTS, sampler_settings

    assert sampler_settings({"name": "tpe"}) == ("tpe", TPE_DEFAULTS, [])
    assert {k: _written("hparams_search/optuna.yaml")[k] for k in TPE_KEYS} == TPE_DEFAULTS
    # another sampler leaves TPE's settings out, and says so only of those changed from the preset
    assert sampler_settings({"name": "random", "seed": 3, **TPE_DEFAULTS}) == ("random", {"seed": 3}, [])
    assert sampler_settings({"name": "random", "multivariate": False})[2] == ["multivariate"]
    cmaes = sampler_settings({"name": "cmaes", **TPE_DEFAULTS, "sigma0": 0.5})
    assert cmaes == ("cmaes", {"n_startup_trials": 10, "sigma0": 0.5}, [])  # TPE's, as the preset has them: quiet


@pytest.mark.parametrize(
    ("sampler", "expected"),
    [
        ({"name": "tpe", "zzz": 1}, "hydra.sweeper.sampler.zzz is not a setting mnistlab passes to an Optuna sampler"),
        ({"name": "tpe", "multivariate": "yes"}, "hydra.sweeper.sampler.multivariate='yes' must be true or false"),
        ({"name": "tpe", "n_startup_trials": -1}, "hydra.sweeper.sampler.n_startup_trials=-1 must be an integer ≥ 0"),
        ({"name": "tpe", "seed": -3}, "hydra.sweeper.sampler.seed=-3 must be null or an integer from 0 to 2**32 - 1"),
        ({"name": "tpe", "multivariate": False}, "hydra.sweeper.sampler.group=true needs multivariate=true"),
        ({"name": "bayes"}, "hydra.sweeper.sampler.name='bayes' is not one of tpe, random, grid, cmaes"),
    ],
)
def test_a_sampler_setting_no_sampler_takes_is_one_line_before_anything_is_written(sampler, expected, tmp_path):
    with pytest.raises(ConfigError) as raised:
        _sweeper(tmp_path, sampler=sampler)
    assert str(raised.value).startswith(expected) and "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_a_bad_sampler_setting_on_the_command_line_exits_2_with_one_line(tmp_path):
    from helpers.cli import run_cli

    args = ["-m", "hparams_search=optuna", "hydra.sweeper.sampler.constant_liar=sometimes"]
    done = run_cli(
        "mnistlab.train", *args, f"hydra.sweep.dir={tmp_path / 'search'}", cwd=tmp_path, check=False, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: hydra.sweeper.sampler.constant_liar='sometimes' must be true or false"
    ]
    assert not (tmp_path / "search" / "optuna.db").exists()  # refused before a study was opened


def _study_with_a_clear_answer():
    """Twelve trials whose objective is mostly model.dropout, a little optim.lr, and not model.norm."""
    import numpy as np
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    study = optuna.create_study(direction="maximize")
    rng = np.random.default_rng(3)
    dists = {
        "model.dropout": FloatDistribution(0.0, 0.5),
        "optim.lr": FloatDistribution(1e-4, 0.1, log=True),
        "model.norm": CategoricalDistribution(["none", "batch"]),
    }
    for number in range(12):
        params = {
            "model.dropout": float(rng.uniform(0, 0.5)),
            "optim.lr": float(10 ** rng.uniform(-4, -1)),
            "model.norm": ("none", "batch")[number % 2],
        }
        value = 0.99 - 0.3 * params["model.dropout"] - 0.01 * abs(np.log10(params["optim.lr"]) + 2.5)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(value)))
    return study


def _report_table(sweep_dir: Path) -> tuple[str, dict[str, str]]:
    """The importance table of the sweep report's Search section: its header, and parameter → printed value."""
    from mnistlab.analysis.sweep.search import search_section

    lines = search_section(sweep_dir)
    start = next(i for i, line in enumerate(lines) if line.startswith("| parameter |"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1]
    return lines[start], rows


@pytest.mark.parametrize(
    ("evaluator", "label"),
    [("FanovaImportanceEvaluator", "fANOVA"), ("PedAnovaImportanceEvaluator", "PED-ANOVA")],
)
def test_the_importance_column_names_the_evaluator_that_computed_it(evaluator, label, monkeypatch, tmp_path):
    """fANOVA as shipped; PED-ANOVA (Optuna 5's default) swapped in to show the label follows the evaluator. The
    numbers are those of Optuna's evaluator run here directly, and differ from the other method's."""
    import optuna

    from mnistlab.analysis.formatting import format_number
    from mnistlab.search import sweeper as sweeper_module

    study = _study_with_a_clear_answer()
    used: list[object] = []
    original = optuna.importance.get_param_importances

    def spy(study, *, evaluator=None, **kwargs):
        used.append(evaluator)
        return original(study, evaluator=evaluator, **kwargs)

    monkeypatch.setattr(optuna.importance, "get_param_importances", spy)
    if evaluator == "PedAnovaImportanceEvaluator":
        monkeypatch.setattr(sweeper_module, "importance_evaluator", optuna.importance.PedAnovaImportanceEvaluator)
    sweeper = _sweeper(tmp_path, pruner={"name": "none"})
    sweeper._write_search_file(study, [])

    assert [type(e).__name__ for e in used] == [evaluator]  # named, never Optuna's default (None)
    monkeypatch.setattr(optuna.importance, "get_param_importances", original)
    fanova = original(study, evaluator=optuna.importance.FanovaImportanceEvaluator(n_trees=64, seed=0))
    ped_anova = original(study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
    expected, other = (fanova, ped_anova) if label == "fANOVA" else (ped_anova, fanova)
    assert max(fanova, key=fanova.get) == "model.dropout"

    search = json.loads((tmp_path / "search.json").read_text())
    assert search["importances"] == pytest.approx(expected)
    assert search["importances"] != pytest.approx(other)  # the two methods say different things here
    header, rows = _report_table(tmp_path)
    assert header == f"| parameter | importance ({label}) |"
    assert rows == {k: format_number(v, 2) for k, v in expected.items()}


def test_an_importance_table_whose_method_is_not_named_claims_none(tmp_path):
    search = {"objective": "val/acc_best", "direction": "maximize", "trials": [], "importances": {"optim.lr": 1.0}}
    (tmp_path / "search.json").write_text(json.dumps(search))
    header, _ = _report_table(tmp_path)
    assert header == "| parameter | importance |"
