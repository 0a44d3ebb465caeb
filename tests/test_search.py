"""hparams_search=optuna on Optuna ≥ 4: NaN and pruned trials, SIGKILL and resume to a total, and several workers
on one PostgreSQL study (a real server, started here on loopback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, needs
from helpers.cli import FAST, run_cli
from helpers.postgres import postgres_server

pytestmark = needs("optuna")

# trial 0 diverges to NaN (FAIL), trial 1 learns nothing and is pruned at epoch 3 of 4 (threshold 0.3; a trial at
# its last epoch is never pruned)
ENQUEUE = "[{optim: sgd_momentum, optim.lr: 1.0e30}, {optim: sgd_momentum, optim.lr: 1.0e-7, optim.momentum: 0.0}]"


def _search(sweep_dir: Path, n_trials: int, *extra: str) -> list[str]:
    return [
        "-m",
        "hparams_search=optuna",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweep.dir={sweep_dir}",
        "hydra.sweeper.sampler.seed=0",
        *FAST,
        "model=mlp",
        "data=mnist",
        *extra,
    ]


def _trials(sweep_dir: Path) -> list[dict]:
    return json.loads((sweep_dir / "search.json").read_text())["trials"]


def _counted(trials: list[dict]) -> list[dict]:
    """The trials that count toward n_trials: finished, not replaced by a retry, not surplus."""
    retried = {t["retry_of"] for t in trials}
    return [
        t
        for t in trials
        if t["state"] in ("COMPLETE", "PRUNED", "FAIL") and t["number"] not in retried and not t["surplus"]
    ]


@pytest.mark.slow
def test_a_search_survives_nan_pruning_and_sigkill_and_resumes_to_its_total(tiny_data, tmp_path):
    sweep = tmp_path / "search"
    args = _search(
        sweep,
        6,
        "trainer.max_epochs=4",
        "scheduler=none",  # the lr of 1e30 from the first step
        "hydra.sweeper.pruner.name=threshold",
        "+hydra.sweeper.pruner.lower=0.3",
        "hydra.sweeper.pruner.n_warmup_steps=3",  # no pruning before epoch 3: the NaN shows first
        f"hydra.sweeper.enqueue={ENQUEUE}",
    )
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(tiny_data), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mnistlab.train", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while not ((sweep / "3" / ".hydra").is_dir() and not (sweep / "3" / "metrics.json").exists()):
        assert process.poll() is None and time.time() < deadline, "trial 3 never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # mid-trial: no handler, no cleanup
    process.wait(timeout=30)

    result = run_cli("mnistlab.train", *args, data_dir=tiny_data, cwd=tmp_path)  # the same command again
    trials = _trials(sweep)
    counted = _counted(trials)
    assert len(counted) == 6
    states = [t["state"] for t in counted]
    assert states.count("FAIL") >= 1 and states.count("PRUNED") >= 1
    nan = next(t for t in trials if t["number"] == 0)
    assert nan["state"] == "FAIL" and "nan" in nan["reason"].lower()
    assert json.loads((sweep / "0" / "metrics.json").read_text())["status"] == "failed"
    assert next(t for t in trials if t["number"] == 1)["state"] == "PRUNED"
    killed = next(t for t in trials if t["number"] == 3)
    retry = next(t for t in trials if t["retry_of"] == 3)
    assert killed["state"] == "FAIL" and retry["params"] == killed["params"] and retry["state"] != "FAIL"
    assert json.loads((sweep / "3" / "metrics.json").read_text())["status"] == "requeued"
    run_dirs = sorted(int(p.name) for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert run_dirs == sorted(t["number"] for t in trials if not t["surplus"])  # one dir per trial, none reused
    report = (sweep / "report.md").read_text()
    assert "## Search" in report and "mnistlab-train" in report and (sweep / "search_history.png").is_file()
    assert "pruned" in result.stdout


@pytest.fixture
def postgres():
    """A PostgreSQL server of its own (helpers.postgres), stopped afterwards."""
    with postgres_server() as url:
        yield url


@pytest.mark.slow
@needs("psycopg")
def test_two_workers_share_one_study_on_postgresql(tiny_data, tmp_path, postgres):
    import optuna

    env = {**os.environ, "MNISTLAB_DATA_DIR": str(tiny_data), "PYTHONUNBUFFERED": "1"}
    workers = []
    for name in ("a", "b"):  # each worker its own sweep dir (its own run dirs), one study in the database
        args = _search(tmp_path / name, 6, f"hydra.sweeper.storage={postgres}", "hydra.sweeper.pruner.name=none")
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "mnistlab.train", *args],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        )
    outputs = [w.communicate(timeout=600)[0].decode() for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[-2000:] for o in outputs]
    study = optuna.load_study(study_name="mnistlab", storage=postgres)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 6  # the total, reached together
    ran = {name: {int(p.name) for p in (tmp_path / name).iterdir() if (p / "metrics.json").is_file()} for name in "ab"}
    assert ran["a"] and ran["b"]  # both workers took trials…
    assert not ran["a"] & ran["b"] and ran["a"] | ran["b"] == {t.number for t in done}  # …none twice


@pytest.mark.slow
def test_a_search_that_keeps_failing_stops_at_max_failures_in_one_line(tiny_data, tmp_path):
    nan = "{optim: sgd_momentum, optim.lr: 1.0e30}"
    args = _search(
        tmp_path / "search",
        5,
        "scheduler=none",
        "hydra.sweeper.max_failures=2",
        "hydra.sweeper.pruner.name=none",
        f"hydra.sweeper.enqueue=[{nan}, {{optim: sgd_momentum, optim.lr: 2.0e30}}]",
    )
    result = run_cli("mnistlab.train", *args, data_dir=tiny_data, cwd=tmp_path, check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and errors == [
        f"error: the search stopped: 2 trials failed (max_failures=2); their reasons are in {tmp_path / 'search'}"
        "/<trial>/metrics.json"
    ], result.stderr[-2000:]
    assert [t["state"] for t in _trials(tmp_path / "search")] == ["FAIL", "FAIL"]
