"""A search shared without a database: ``hydra.sweeper.storage=journal:…`` (Optuna's JournalStorage on a file).
Resume to a total, the stored goal, a dead worker's trial failed and queued again exactly once, and a journal
file it cannot use as one line, in this process; then two worker processes on one journal file after a third
was SIGKILLed mid-trial, checked by reading the journal with Optuna itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import needs
from helpers.cli import FAST, run_cli, start_train

from mnistlab.core.errors import ConfigError, MnistlabError

pytestmark = needs("optuna")

SPACE = {"optim.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}}


def _sweeper(sweep_dir: Path, storage: str, **settings):
    from omegaconf import OmegaConf

    from mnistlab.search.sweeper import OptunaSweeper

    sweeper = OptunaSweeper(storage=storage, pruner={"name": "none"}, **settings)
    sweeper.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}})
    sweeper.sweep_dir = sweep_dir
    sweeper.params = SPACE
    return sweeper


class _Launcher:
    """Runs each trial by writing a completed record (its score from the trial number), as mnistlab-train would."""

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir, self.ran = sweep_dir, []

    def launch(self, jobs: list[list[str]], initial_job_idx: int) -> list[None]:
        from mnistlab.core.record import RANK_BY, STATUS, Status, write_record

        for number, overrides in enumerate(jobs, start=initial_job_idx):
            run_dir = self.sweep_dir / str(number)
            run_dir.mkdir(parents=True)
            self.ran.append(overrides)
            write_record(run_dir, {STATUS: Status.COMPLETED, RANK_BY: 0.5 + number / 100})
        return [None] * len(jobs)


def _read_study(journal: Path):
    """The study as Optuna itself reads the file (its default lock: reading takes none)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name="mnistlab", storage=JournalStorage(JournalFileBackend(str(journal))))


def test_journal_settings_name_a_file(tmp_path):
    from mnistlab.search.journal import journal_path

    assert journal_path("journal:///srv/search/study.log", tmp_path) == Path("/srv/search/study.log")
    assert journal_path("journal:/srv/study.log", tmp_path) == Path("/srv/study.log")
    assert journal_path("journal:study.log", tmp_path) == tmp_path.resolve() / "study.log"
    for bad in ("journal://host/study.log", "journal:", "journal:///srv/"):
        with pytest.raises(ConfigError, match=r"journal:///absolute/path/study\.log or journal:study\.log"):
            journal_path(bad, tmp_path)


def test_a_journal_search_continues_to_its_total_and_keeps_its_goal(tmp_path):
    first = _sweeper(tmp_path, "journal:study.log")
    first.n_trials, first.launcher = 2, _Launcher(tmp_path)
    first.sweep([])
    again = _sweeper(tmp_path, "journal:study.log")  # the same command, 3 in total
    again.n_trials, again.launcher = 3, _Launcher(tmp_path)
    again.sweep([])

    study = _read_study(tmp_path / "study.log")
    assert [(t.number, t.state.name) for t in study.trials] == [(0, "COMPLETE"), (1, "COMPLETE"), (2, "COMPLETE")]
    assert [t.value for t in study.trials] == pytest.approx([0.5, 0.51, 0.52])  # the scores their records hold
    assert len(again.launcher.ran) == 1
    search = json.loads((tmp_path / "search.json").read_text())
    assert [t["number"] for t in search["trials"]] == [0, 1, 2] and search["best"]["number"] == 2

    other = _sweeper(tmp_path, "journal:study.log", direction="minimize")
    with pytest.raises(ConfigError) as raised:
        other._open_study([])
    assert str(raised.value).startswith(
        f"study 'mnistlab' in {tmp_path.resolve() / 'study.log'} was made to maximize val/acc_best, not to minimize"
    )


def _dead_trial(journal: Path, beat_age_s: float, lr: float) -> int:
    """A trial left RUNNING by a worker that stopped beating ``beat_age_s`` seconds ago; its number."""
    import optuna

    from mnistlab.search.journal import HEARTBEAT_ATTR, JournalStudyStorage

    storage = JournalStudyStorage(journal)
    study = optuna.create_study(study_name="mnistlab", storage=storage, direction="maximize", load_if_exists=True)
    study.set_user_attr("objective", "val/acc_best")
    study.enqueue_trial({"optim.lr": lr})
    trial = study.ask()
    trial.suggest_float("optim.lr", 1e-4, 0.1, log=True)
    storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time() - beat_age_s)
    return trial.number


def test_a_dead_workers_trial_is_failed_and_run_again_once_while_a_live_one_is_left(tmp_path):
    journal = tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    dead = _dead_trial(journal, beat_age_s=30, lr=0.01)  # heartbeat_interval 10: stale after 20 s
    live = _dead_trial(journal, beat_age_s=5, lr=0.02)  # still within 2 × the interval: its worker may be alive
    a = _sweeper(tmp_path / "a", f"journal://{journal}", heartbeat_interval=10)
    a._requeue_dead(a._open_study([]))
    study = _read_study(journal)
    assert study.trials[dead].state.name == "FAIL" and study.trials[live].state.name == "RUNNING"
    # a second worker that looked in the same moment (before the first one's retry was there) queues it too
    study.enqueue_trial(study.trials[dead].params, user_attrs={"retry_of": dead})
    assert [t.user_attrs.get("retry_of") for t in _read_study(journal).trials] == [None, None, dead, dead]

    a.n_trials, a.launcher = 3, _Launcher(tmp_path / "a")
    a.sweep([])
    trials = _read_study(journal).trials
    retries = [t for t in trials if t.user_attrs.get("retry_of") == dead]
    run = [t for t in retries if not t.user_attrs.get("surplus")]
    assert len(run) == 1 and run[0].state.name == "COMPLETE" and run[0].params == trials[dead].params
    assert [t.state.name for t in retries if t.user_attrs.get("surplus")] == ["FAIL"]  # the second one: not run
    assert trials[live].state.name == "RUNNING"  # never failed while its heartbeat is fresh
    ran_lr = [o for job in a.launcher.ran for o in job if o.startswith("optim.lr=")]
    assert ran_lr.count(f"optim.lr={trials[dead].params['optim.lr']!r}") == 1


def _real_journal(path: Path) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))), study_name="mnistlab")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("directory", "is a directory, not a journal file: name a file in it, such as journal:///"),
        ("no parent", "(the journal's directory) does not exist: create it"),
        ("garbage", "is not a readable Optuna journal (line 1: not a JSON record): move it away"),
        ("sqlite", "is not a readable Optuna journal (line 1: not a JSON record): move it away"),
        ("other json", "is not a readable Optuna journal (line 1: a JSON record without Optuna's op_code)"),
        ("bad last line", "is not a readable Optuna journal (line {n}: not a JSON record): move it away"),
    ],
)
def test_a_journal_it_cannot_use_is_one_line_at_once_and_left_as_it_was(damage, expected, tmp_path):
    journal = tmp_path / "study.log"
    if damage == "directory":
        journal.mkdir()
    elif damage == "no parent":
        journal = tmp_path / "missing" / "study.log"
    elif damage == "garbage":
        journal.write_bytes(b"\x00garbage bytes, not a journal\xff" * 100)
    elif damage == "sqlite":
        import sqlite3

        sqlite3.connect(journal).execute("create table t (x)").connection.commit()
    elif damage == "other json":
        journal.write_text('{"epoch": 1, "val/acc": 0.9}\n{"epoch": 2, "val/acc": 0.95}\n')
    else:
        _real_journal(journal)
        expected = expected.format(n=journal.read_bytes().count(b"\n") + 1)
        with journal.open("ab") as f:
            f.write(b"half a record, then a newl\n")  # Optuna alone would skip it and append after it
    before = journal.read_bytes() if journal.is_file() else None
    sweeper = _sweeper(tmp_path, f"journal://{journal}")
    start = time.monotonic()
    with pytest.raises(MnistlabError) as raised:
        sweeper._open_study([])
    message = str(raised.value)
    assert expected in message and str(journal if damage != "no parent" else journal.parent) in message
    assert "\n" not in message and time.monotonic() - start < 2
    assert (journal.read_bytes() if journal.is_file() else None) == before
    assert not list(tmp_path.rglob("*.lock"))


def test_a_journal_this_user_cannot_append_to_is_one_line(tmp_path):
    """Another user's file (chmod), or, for root, whom no mode stops, an immutable one (chattr +i)."""
    from mnistlab.search.journal import check_journal

    journal = tmp_path / "study.log"
    _real_journal(journal)
    chattr = shutil.which("chattr")
    if os.geteuid() != 0:
        journal.chmod(0)
        reason = "Permission denied"
    elif chattr and subprocess.run([chattr, "+i", str(journal)], capture_output=True).returncode == 0:
        reason = "no permission to append to it"
    else:
        pytest.skip("root reads and writes any file, and this file system takes no chattr +i")
    try:
        with pytest.raises(MnistlabError) as raised:
            check_journal(journal)
    finally:
        if os.geteuid() == 0:
            subprocess.run([chattr, "-i", str(journal)], check=True)
        journal.chmod(0o644)
    assert str(raised.value) == (
        f"hydra.sweeper.storage: {journal} cannot be read and appended to ({reason}): give this user read and "
        "write access to it, or name another journal"
    )


def test_a_journal_that_is_a_directory_exits_2_with_one_line(tmp_path):
    args = ["-m", "hparams_search=optuna", f"hydra.sweep.dir={tmp_path / 'search'}"]
    done = run_cli(
        "mnistlab.train", *args, f"hydra.sweeper.storage=journal://{tmp_path}", cwd=tmp_path, check=False, timeout=120
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.stderr.strip().splitlines() == [
        f"error: hydra.sweeper.storage: {tmp_path} is a directory, not a journal file: name a file in it, such as "
        f"journal://{tmp_path / 'study.log'}"
    ]


def _worker(sweep_dir: Path, journal: Path, seed: int, data: Path) -> subprocess.Popen:
    args = [
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        f"hydra.sweep.dir={sweep_dir}",
        f"hydra.sweeper.storage=journal://{journal}",
        "hydra.sweeper.heartbeat_interval=3",  # a dead worker's trial is stale after 6 s
        f"hydra.sweeper.sampler.seed={seed}",  # each worker its own: no two draw the same values
        "hydra.sweeper.pruner.name=none",
        *FAST,
        "model=mlp",
        "data=mnist",
    ]
    return start_train(args, data)


@pytest.mark.slow
def test_two_workers_share_one_journal_and_run_a_killed_workers_trial_again(tiny_data, tmp_path):
    journal = tmp_path / "shared" / "study.log"
    journal.parent.mkdir()
    killed = _worker(tmp_path / "k", journal, 1, tiny_data)
    first = tmp_path / "k" / "0"
    deadline = time.time() + 240
    while not ((first / ".hydra").is_dir() and not (first / "metrics.json").exists()):
        assert killed.poll() is None and time.time() < deadline, "trial 0 never started"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)  # mid-trial: no handler, no cleanup, its trial left RUNNING
    killed.wait(timeout=30)
    time.sleep(6.5)  # its last heartbeat is now older than 2 × heartbeat_interval

    workers = [_worker(tmp_path / name, journal, seed, tiny_data) for name, seed in (("a", 2), ("b", 3))]
    outputs = [w.communicate(timeout=600)[0].decode() for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[-3000:] for o in outputs]

    trials = _read_study(journal).trials
    assert trials[0].state.name == "FAIL"  # the killed worker's trial, failed by a live worker
    retries = [t for t in trials if t.user_attrs.get("retry_of") == 0 and not t.user_attrs.get("surplus")]
    assert len(retries) == 1 and retries[0].params == trials[0].params and retries[0].state.name == "COMPLETE"
    counted = [t for t in trials if t.number != 0 and not t.user_attrs.get("surplus")]
    assert [t.state.name for t in counted] == ["COMPLETE"] * 4  # the total, reached together
    assert len({json.dumps(t.params, sort_keys=True) for t in counted}) == 4  # no values run twice
    ran = {name: {int(p.name) for p in (tmp_path / name).iterdir() if (p / "metrics.json").is_file()} for name in "ab"}
    assert ran["a"] and ran["b"]  # both workers took trials…
    assert not ran["a"] & ran["b"] and ran["a"] | ran["b"] == {t.number for t in counted}  # …none twice
    assert all("## Search" in (tmp_path / name / "report.md").read_text() for name in "ab")
