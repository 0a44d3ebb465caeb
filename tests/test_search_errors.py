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
