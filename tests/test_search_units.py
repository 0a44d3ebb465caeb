"""The search's parts in this process, in milliseconds: the pruning callback at a trial's last epoch, a space's
conditions declared in any order, the best trial's command line, and trials a signal stopped."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import needs

from mnistlab.core.errors import ConfigError, TrialPruned
from mnistlab.search.space import parse_space, sample

pytestmark = needs("optuna")


def _trainer(epoch: int, max_epochs: int, value: float) -> SimpleNamespace:
    import torch

    return SimpleNamespace(
        sanity_checking=False,
        current_epoch=epoch,
        max_epochs=max_epochs,
        callback_metrics={"val/acc": torch.tensor(value)},
    )


def test_a_trial_is_pruned_before_its_last_epoch_but_completes_at_it():
    import optuna

    from mnistlab.search.pruning import OptunaPruning

    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.5))
    callback = OptunaPruning()
    callback.trial = study.ask()
    with pytest.raises(TrialPruned, match="epoch 2"):
        callback.on_validation_end(_trainer(1, 3, 0.1), None)  # epoch 2 of 3: hopeless, pruned
    last = OptunaPruning()
    last.trial = study.ask()
    last.on_validation_end(_trainer(2, 3, 0.1), None)  # epoch 3 of 3: the run is done, its value kept
    assert last.trial.should_prune()  # the pruner would have said so
    assert study.get_trials()[1].intermediate_values == {3: pytest.approx(0.1)}
    unlimited = OptunaPruning()
    unlimited.trial = study.ask()
    with pytest.raises(TrialPruned):
        unlimited.on_validation_end(_trainer(5, -1, 0.1), None)  # max_epochs=-1: no last epoch


NESTED = {  # a grandchild, then its parent, then the root: declared in reverse
    "optim.nesterov": {"type": "categorical", "choices": [True, False], "when": {"optim.momentum_kind": "fixed"}},
    "optim.momentum_kind": {"type": "categorical", "choices": ["fixed"], "when": {"optim": "sgd_momentum"}},
    "optim": {"type": "categorical", "choices": ["sgd_momentum"]},
}


def test_nested_conditions_declared_before_their_parent_are_sampled():
    import optuna

    space, _ = parse_space(NESTED, [])
    assert [p.key for p in space] == ["optim", "optim.momentum_kind", "optim.nesterov"]
    trial = optuna.create_study().ask()
    assert set(sample(space, trial)) == {"optim", "optim.momentum_kind", "optim.nesterov"}


def test_conditions_that_depend_on_each_other_are_one_line():
    cycle = {
        "a": {"type": "categorical", "choices": [1], "when": {"b": 1}},
        "b": {"type": "categorical", "choices": [1], "when": {"a": 1}},
        "c": {"type": "float", "low": 0, "high": 1},
    }
    with pytest.raises(ConfigError) as raised:
        parse_space(cycle, [])
    assert str(raised.value) == "hparams_search params a, b: their 'when' conditions depend on each other in a cycle"


def _sweeper(sweep_dir: Path, storage: str | None = None):
    from omegaconf import OmegaConf

    from mnistlab.search.sweeper import OptunaSweeper

    sweeper = OptunaSweeper(storage=storage, pruner={"name": "none"})
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})
    sweeper.sweep_dir = sweep_dir
    return sweeper


def test_the_command_to_train_the_best_trial_again_is_what_it_ran(tmp_path):
    """A rerun of the search with other fixed overrides does not change what the best trial ran."""
    sweeper = _sweeper(tmp_path)
    space, _ = parse_space({"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1}}, [])
    study = sweeper._open_study(space)
    trial = study.ask()
    trial.suggest_float("optim.lr", 1e-4, 0.1)
    job = tmp_path / str(trial.number) / ".hydra"
    job.mkdir(parents=True)
    ran = ["model=mlp", f"optim.lr={trial.params['optim.lr']!r}", "search.trial=0", "search.monitor=val/acc"]
    (job / "overrides.yaml").write_text("".join(f"- {o}\n" for o in ran))
    study.tell(trial, 0.9)
    sweeper._write_search_file(study, ["model=cnn", "data.batch_size=64"])  # a later rerun's fixed overrides
    best = json.loads((tmp_path / "search.json").read_text())["best"]
    assert best["command"] == f"mnistlab-train model=mlp optim.lr={trial.params['optim.lr']!r}"


class _Launcher:
    """Runs each trial by writing its record: completed with a score, or, for the trial numbers in ``stop``,
    interrupted by the signal as ``mnistlab-train`` ends (its record, then exit status 128 + the signal)."""

    def __init__(self, sweep_dir: Path, stop: dict[int, int] | None = None) -> None:
        self.sweep_dir, self.stop, self.ran = sweep_dir, stop or {}, []

    def launch(self, jobs: list[list[str]], initial_job_idx: int) -> list[None]:
        from mnistlab.core.record import RANK_BY, STATUS, Status, write_record

        for number, overrides in enumerate(jobs, start=initial_job_idx):
            run_dir = self.sweep_dir / str(number)
            run_dir.mkdir(parents=True)
            self.ran.append(overrides)
            if number in self.stop:
                write_record(run_dir, {STATUS: Status.INTERRUPTED, "reason": "SIGTERM after 1 finished epochs"})
                raise SystemExit(128 + self.stop[number])
            write_record(run_dir, {STATUS: Status.COMPLETED, RANK_BY: 0.5 + number / 100})
        return [None] * len(jobs)


def test_a_trial_stopped_by_sigterm_runs_again_with_its_values_and_is_no_failure(tmp_path):
    import signal

    from mnistlab.core.record import STATUS, read_record

    space = {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1}}
    first = _sweeper(tmp_path)
    first.params, first.n_trials = space, 3
    first.launcher = _Launcher(tmp_path, stop={1: signal.SIGTERM})
    with pytest.raises(SystemExit):
        first.sweep([])
    terminated = first.storage.get_all_trials(first.storage.get_study_id_from_name("mnistlab"))[1]
    assert terminated.state.name == "FAIL" and terminated.user_attrs["terminated"] == "SIGTERM"

    again = _sweeper(tmp_path)  # the same command again
    again.params, again.n_trials = space, 3
    again.launcher = _Launcher(tmp_path)
    again.sweep([])
    trials = json.loads((tmp_path / "search.json").read_text())["trials"]
    retry = next(t for t in trials if t["retry_of"] == 1)
    assert retry["params"] == terminated.params and retry["state"] == "COMPLETE"
    assert f"optim.lr={terminated.params['optim.lr']!r}" in again.launcher.ran[0]  # the first one run again
    assert [t["state"] for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]  # 3 finished, none failed
    assert read_record(tmp_path / "1")[STATUS] == "requeued"


class _Uncomposable:
    """Every trial fails to compose, as a swept key that is not in the config does."""

    def launch(self, jobs: list[list[str]], initial_job_idx: int) -> list[None]:
        raise ValueError("Could not override 'trainer.foo'.\nKey 'foo' is not in struct")


def test_a_search_whose_every_trial_fails_to_compose_ends_with_one_line_and_status_2(tmp_path, capsys):
    sweeper = _sweeper(tmp_path)
    sweeper.params, sweeper.n_trials = {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1}}, 2
    sweeper.launcher = _Uncomposable()
    with pytest.raises(SystemExit) as ended:
        sweeper.sweep([])
    assert ended.value.code == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert error == [
        "error: the search ended with none of its 2 trials completed (trial 1: could not be launched: Could not "
        "override 'trainer.foo'.); fix the command line or hydra.sweeper.params"
    ]
    trials = json.loads((tmp_path / "search.json").read_text())["trials"]
    assert [t["reason"] for t in trials] == ["could not be launched: Could not override 'trainer.foo'."] * 2
