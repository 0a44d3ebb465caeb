"""A search's settings and space as a user gets them wrong or narrows them: one line and exit 2, never a
traceback; a condition on a parameter the command line fixes is resolved, not refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mnistlab.search.space import parse_space

SPACE = {
    "optim": {"type": "categorical", "choices": ["sgd_momentum", "adamw"]},
    "optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    "optim.momentum": {"type": "float", "low": 0.8, "high": 0.99, "when": {"optim": ["sgd_momentum"]}},
}


def test_a_condition_on_a_fixed_parameter_keeps_or_drops_the_parameter():
    kept, fixed = parse_space(SPACE, ["optim=sgd_momentum"])
    assert [p.key for p in kept] == ["optim.lr", "optim.momentum"] and not kept[1].when
    assert fixed == ["optim=sgd_momentum"]
    dropped, _ = parse_space(SPACE, ["optim=adamw"])
    assert [p.key for p in dropped] == ["optim.lr"]


def test_our_errors_raised_inside_hydra_are_one_line():
    from hydra.errors import InstantiationException

    from mnistlab.core.composition import explain
    from mnistlab.core.errors import ConfigError

    try:
        try:
            raise ConfigError("hydra.sweeper.direction='sideways' must be maximize or minimize")
        except ConfigError as ours:
            raise InstantiationException("Error in call to target 'Sweeper':\nfull_key: hydra.sweeper") from ours
    except InstantiationException as err:
        assert explain(err, "train", []) == "hydra.sweeper.direction='sideways' must be maximize or minimize"


@pytest.mark.parametrize(
    ("override", "expected"),
    [("hydra.sweeper.direction=sideways", "must be maximize or minimize"), ("hydra.sweeper.n_jobs=0", "positive")],
)
def test_bad_sweeper_settings_exit_2_with_one_line(override, expected, tmp_path):
    args = ["-m", "hparams_search=optuna", override, f"hydra.sweep.dir={tmp_path / 'search'}"]
    done = subprocess.run(
        [sys.executable, "-m", "mnistlab.train", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and expected in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def _open(sweep_dir, storage=None):
    """The sweeper's study, opened as ``sweep`` opens it; (the error line, seconds it took)."""
    import time

    from omegaconf import OmegaConf

    from mnistlab.core.errors import MnistlabError
    from mnistlab.search.sweeper import OptunaSweeper

    sweeper = OptunaSweeper(storage=storage)
    sweeper.config = OmegaConf.create({})
    sweeper.sweep_dir = sweep_dir
    start = time.monotonic()
    with pytest.raises(MnistlabError) as raised:
        sweeper._open_study(parse_space(SPACE, [])[0])
    message = str(raised.value)
    assert "\n" not in message
    return message, time.monotonic() - start


def _real_study(path):
    import optuna

    study = optuna.create_study(storage=f"sqlite:///{path}", study_name="mnistlab", direction="maximize")
    for value in (0.1, 0.2, 0.3):
        trial = study.ask()
        trial.suggest_float("optim.lr", 1e-4, 0.1)
        study.tell(trial, value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_study_database_is_one_line_at_once(damage, tmp_path):
    pytest.importorskip("optuna")
    db = tmp_path / "optuna.db"
    if damage == "garbage":
        db.write_bytes(b"\x00garbage bytes, not SQLite\xff" * 100)
    else:
        _real_study(db)
        db.write_bytes(db.read_bytes()[:8192])
    before = db.read_bytes()
    message, seconds = _open(tmp_path)
    assert message.startswith(f"{db.resolve()} is not a readable Optuna study (")
    assert "move it away" in message and seconds < 2
    assert db.read_bytes() == before  # the user's file is left as it was


def test_a_database_server_that_refuses_is_one_line_at_once(tmp_path):
    pytest.importorskip("optuna")
    pytest.importorskip("psycopg", reason="the [postgres] extra is not installed")
    message, seconds = _open(tmp_path, "postgresql://u:p@127.0.0.1:1/db")
    assert message.startswith("hydra.sweeper.storage: cannot open the study (") and "Connection refused" in message
    assert ":p@" not in message and seconds < 2


def test_a_wrong_database_password_is_one_line_at_once(tmp_path):
    pytest.importorskip("optuna")
    from helpers.postgres import postgres_server

    with postgres_server(password="right") as url:
        message, seconds = _open(tmp_path, url.replace(":right@", ":wrong@"))
    assert "password authentication failed" in message and "wrong" not in message and seconds < 2


def test_a_damaged_study_database_exits_2_with_one_line(tmp_path):
    pytest.importorskip("optuna")
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "optuna.db").write_bytes(b"not a database" * 100)
    args = ["-m", "hparams_search=optuna", f"hydra.sweep.dir={tmp_path / 'search'}"]
    done = subprocess.run(
        [sys.executable, "-m", "mnistlab.train", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and "is not a readable Optuna study" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_study_continued_for_another_direction_or_objective_is_one_line(tmp_path):
    """Optuna loads a study whatever direction is asked; its trials were scored for one goal, so another is
    refused (sweep.json catches the same when it is there; this is the study's own record)."""
    pytest.importorskip("optuna")
    from omegaconf import OmegaConf

    from mnistlab.core.errors import MnistlabError
    from mnistlab.core.factors import write_sweep_file
    from mnistlab.search.sweeper import OptunaSweeper

    _real_study(tmp_path / "optuna.db")
    for kwargs, expected in (
        ({"direction": "minimize"}, "was made to maximize val/acc_best, not to minimize val/acc_best"),
        ({"objective": "test/acc"}, "was made to maximize val/acc_best, not to maximize test/acc"),
    ):
        sweeper = OptunaSweeper(**kwargs)
        sweeper.config = OmegaConf.create({})
        sweeper.sweep_dir = tmp_path
        write_sweep_file(tmp_path, ["optim=sgd,adam"], None, {"overrides": [], "params": {}})  # made by this start
        with pytest.raises(MnistlabError) as raised:
            sweeper._open_study(parse_space(SPACE, [])[0])
        assert expected in str(raised.value) and "\n" not in str(raised.value)
        assert not (tmp_path / "sweep.json").exists()  # withdrawn: the dir is the earlier search's, as it was
    (tmp_path / "sweep.json").write_text("{}")  # one this process did not make stays
    with pytest.raises(MnistlabError):
        sweeper._open_study(parse_space(SPACE, [])[0])
    assert (tmp_path / "sweep.json").read_text() == "{}"


def test_a_categorical_with_another_level_than_the_study_has_is_one_line(tmp_path):
    """sweep.json gone, the study kept: Optuna's own refusal of the new choices becomes one line, and the trial
    it opened is closed and takes no place of n_trials."""
    optuna = pytest.importorskip("optuna")
    from omegaconf import OmegaConf

    from mnistlab.core.errors import ConfigError
    from mnistlab.search.sweeper import OptunaSweeper

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name="mnistlab")
    trial = study.ask()
    trial.suggest_categorical("optim", ["sgd", "adam"])
    study.tell(trial, 0.5)
    space = parse_space({"optim": {"type": "categorical", "choices": ["sgd", "adam", "rmsprop"]}}, [])[0]
    sweeper = OptunaSweeper(direction="minimize")
    sweeper.config = OmegaConf.create({})
    sweeper.sweep_dir = tmp_path
    opened = sweeper._open_study(space)
    with pytest.raises(ConfigError, match=r"trial 1 does not fit hydra\.sweeper\.params"):
        sweeper._ask(opened, space, 1)
    assert [t.state.name for t in opened.get_trials()] == ["COMPLETE", "FAIL"]
    assert sweeper._tally(opened) == ([opened.get_trials()[0]], [])


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"n_trials": "abc"}, "n_trials, n_jobs and max_failures must be positive integers"),
        ({"n_trials": -3}, "n_trials, n_jobs and max_failures must be positive integers"),
        ({"pruner": {"name": "median", "n_startup_trials": -1}}, "pruner (median): Number of startup trials cannot"),
        ({"sampler": {"name": "tpe", "zzz": 1}}, "sampler.zzz is not a setting mnistlab passes to an Optuna sampler"),
    ],
)
def test_sweeper_settings_optuna_refuses_are_one_line_naming_the_setting(settings, expected, tmp_path):
    """Refused before the study's database is touched: never blamed on optuna.db."""
    pytest.importorskip("optuna")
    from omegaconf import OmegaConf

    from mnistlab.core.errors import ConfigError
    from mnistlab.search.sweeper import OptunaSweeper

    with pytest.raises(ConfigError) as raised:
        sweeper = OptunaSweeper(**settings)
        sweeper.config = OmegaConf.create({})
        sweeper.sweep_dir = tmp_path
        sweeper._open_study(parse_space(SPACE, [])[0])
    assert expected in str(raised.value) and "\n" not in str(raised.value) and "optuna.db" not in str(raised.value)
    assert not (tmp_path / "optuna.db").exists()


@pytest.mark.parametrize("item", [3, None, b"seed=1"])
def test_an_override_that_is_not_text_is_named_by_the_api(item):
    from mnistlab import api

    with pytest.raises(TypeError, match=r"overrides must be strings such as 'optim=sgd'; item 1 is "):
        api.train(["seed=1", item])
