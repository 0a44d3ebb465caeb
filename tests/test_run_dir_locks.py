"""A run dir's record always names what ran: the lock is the OS's (a killed holder's lock goes with it), it is
taken before anything is written into the dir, a refused or killed resume leaves the run's files as they were, a
killed writer's temporary files are cleaned up, and a run dir may be named with any character."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.cli import FAST, run_cli, start_train
from helpers.runs import metrics

from mnistlab.core.errors import BusyError
from mnistlab.core.provenance import PROVENANCE_FILE

SMALL = [*FAST, "model=cnn", "data=mnist"]  # what the shared cnn_run ran


def _fingerprint(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _holder(folder: Path, hostname: str | None = None) -> subprocess.Popen:
    """A process that takes ``folder``'s lock (as a host named ``hostname``) and waits; its pid once it holds it."""
    code = f"""
        import socket, sys, time
        from pathlib import Path
        if {hostname!r}:
            socket.gethostname = lambda: {hostname!r}
        from mnistlab.core.files import acquire_dir
        acquire_dir(Path({str(folder)!r}))
        print("held", flush=True)
        time.sleep(120)
    """
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def _copy(run: Path, where: Path) -> Path:
    shutil.copytree(run, where)
    return where


# -- the lock is the OS's ---------------------------------------------------------------------------------------
def test_a_killed_holders_lock_goes_with_it_even_from_another_host(tmp_path):
    """A run killed in a container (another host name, the same folder): its lock file stays, naming a process
    this host cannot check; the OS released its lock, so the next run takes the dir."""
    from mnistlab.core.files import LOCK_FILE, acquire_dir, dir_busy, release_dir

    holder = _holder(tmp_path, hostname="container-7")
    try:
        with pytest.raises(BusyError, match=f"is in use by process {holder.pid} on container-7"):
            acquire_dir(tmp_path)
        assert f"in use by process {holder.pid} on container-7" in (dir_busy(tmp_path) or "")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["host"] == "container-7"  # left behind by the kill
    assert dir_busy(tmp_path) is None
    assert acquire_dir(tmp_path) is True
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    release_dir(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()


def test_without_os_locks_the_pid_and_host_lock_is_used(tmp_path, monkeypatch):
    import fcntl

    from mnistlab.core.files import LOCK_FILE, acquire_dir, release_dir

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert acquire_dir(tmp_path) is True
    assert json.loads((tmp_path / LOCK_FILE).read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
    release_dir(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()


# -- a killed writer's temporary files --------------------------------------------------------------------------
def test_the_next_holder_removes_mnistlabs_orphan_temporary_files_only(tmp_path):
    from mnistlab.core.files import PROCESS_STARTED, acquire_dir, release_dir

    orphans = [".metrics.json.k2j4_x9q.tmp", ".hydra/.config.yaml.abcd1234.tmp", "checkpoints/.last.ckpt.0a1b2c3d.tmp"]
    kept = [
        "notes.tmp",  # not mnistlab's pattern
        ".metrics.json.tmp",
        "data/.x.abcd1234.tmp",  # not a folder mnistlab writes its run files in
        ".report.md.zzzz9999.tmp",  # written after this process started: someone may be writing it
    ]
    for name in orphans + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("half")
        if name != kept[-1]:
            os.utime(tmp_path / name, (PROCESS_STARTED - 60, PROCESS_STARTED - 60))
    acquire_dir(tmp_path)
    release_dir(tmp_path)
    assert [n for n in orphans if (tmp_path / n).exists()] == []
    assert [n for n in kept if (tmp_path / n).exists()] == kept


# -- nothing is written into a run dir before its lock ----------------------------------------------------------
def test_a_resume_refused_by_the_lock_leaves_every_file_of_the_run_dir_unchanged(
    cnn_run, command_error, tmp_path, monkeypatch
):
    """Another resume took the dir just after this one's first check (two started together): refused at the
    lock, the run's .hydra files, record and all else are byte for byte what they were."""
    import mnistlab.core.config

    run_dir = _copy(cnn_run, tmp_path / "run")
    holder = _holder(run_dir)
    try:
        before = _fingerprint(run_dir)
        monkeypatch.setattr(mnistlab.core.config, "refuse_busy_dirs", lambda argv: None)  # the race's window
        message = command_error("train", f"resume={run_dir}", "trainer.max_epochs=5")
        assert f"is in use by process {holder.pid}" in message
        assert _fingerprint(run_dir) == before
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow
def test_two_resumes_started_together_leave_the_winners_record(cnn_run, tiny_data, tmp_path):
    run_dir = _copy(cnn_run, tmp_path / "run")
    started = {n: start_train([f"resume={run_dir}", f"trainer.max_epochs={n}"], tiny_data) for n in (12, 13)}
    outputs = {n: p.communicate(timeout=300)[0].decode() for n, p in started.items()}
    codes = {n: p.returncode for n, p in started.items()}
    (winner,) = [n for n, code in codes.items() if code == 0]  # 10+ epochs each: they overlap
    (loser,) = set(codes) - {winner}
    assert codes[loser] == 2 and "is in use by process" in outputs[loser], outputs[loser][-2000:]
    overrides = (run_dir / ".hydra" / "overrides.yaml").read_text()
    epochs_set = [line for line in overrides.splitlines() if line.startswith("- trainer.max_epochs=")]
    assert epochs_set[-1] == f"- trainer.max_epochs={winner}", overrides  # the last one set wins
    assert metrics(run_dir)["epochs"] == winner and metrics(run_dir)["status"] == "completed"
    assert not (run_dir / ".hydra" / "before-resume").exists()


def test_a_resume_killed_before_training_is_not_what_the_next_resume_replays(cnn_run, tiny_data, tmp_path):
    from mnistlab.core.config import expand_resume

    run_dir = _copy(cnn_run, tmp_path / "run")
    before = _fingerprint(run_dir / ".hydra")
    code = f"""
        import os, signal, sys
        import mnistlab.training.pipeline as pipeline
        pipeline.build_run = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # killed just before training
        sys.argv = ["mnistlab-train", {f"resume={run_dir}"!r}, "trainer.max_epochs=9"]
        from mnistlab.train import cli
        cli()
    """
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(tiny_data)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
    assert _fingerprint(run_dir / ".hydra") == before
    replayed = expand_resume(["mnistlab-train", f"resume={run_dir}"])
    assert not any("max_epochs=9" in a for a in replayed), replayed


def test_an_empty_or_unreadable_before_resume_copy_is_never_restored(cnn_run, command_error, tmp_path):
    """An earlier mnistlab kept the run's .hydra files in before-resume/ while a resume had not started; a copy
    that a kill left empty or broken is refused in one line, and nothing of the run changes."""
    run_dir = _copy(cnn_run, tmp_path / "run")
    keep = run_dir / ".hydra" / "before-resume"
    keep.mkdir()
    for content in (b"", b"- [unclosed\n"):
        (keep / "overrides.yaml").write_bytes(content)
        before = _fingerprint(run_dir)
        message = command_error("train", f"resume={run_dir}")
        assert "before-resume/overrides.yaml is not a usable copy" in message and f"delete {keep}" in message
        assert _fingerprint(run_dir) == before


def test_a_good_before_resume_copy_is_what_a_resume_replays(cnn_run, tmp_path):
    from mnistlab.core.config import expand_resume

    run_dir = _copy(cnn_run, tmp_path / "run")
    keep = run_dir / ".hydra" / "before-resume"
    keep.mkdir()
    shutil.copy2(run_dir / ".hydra" / "overrides.yaml", keep / "overrides.yaml")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- trainer.max_epochs=9\n")  # a resume that never started
    assert not any("max_epochs=9" in a for a in expand_resume(["mnistlab-train", f"resume={run_dir}"]))


# -- SIGTERM before the first epoch ended -----------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_stopped_before_its_first_epoch_ended_resumes_from_scratch(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    process = start_train([*SMALL, "data.batch_size=1", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"], tiny_data)
    deadline = time.time() + 120
    while not (run_dir / PROVENANCE_FILE).exists():  # written just before the data and the model are built
        assert process.poll() is None and time.time() < deadline, process.stdout.read().decode()[-3000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
    record = metrics(run_dir)
    assert record["status"] == "interrupted" and not (run_dir / "checkpoints" / "last.ckpt").exists()
    assert record["resume_with"] == f"resume={run_dir}" and "before the first epoch ended" in record["reason"]
    result = run_cli("mnistlab.train", f"resume={run_dir}", "data.batch_size=32", data_dir=tiny_data)
    assert "training starts again from the first epoch" in result.stderr
    record = metrics(run_dir)
    assert record["status"] == "completed" and record["epochs"] == 1


# -- any character in a run dir's name --------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["resume", "rerun"])
def test_a_run_dir_named_with_any_character_resumes_and_reruns(key, cnn_run, command_error, tmp_path):
    # command_error's set-up only: training refused, the tiny data, tmp_path as the working dir
    """Hydra's grammar reads ``,`` ``=`` quotes, brackets and spaces in an override; the path goes in quoted: the
    command gets past composition and every check to the training itself."""
    from helpers.inprocess import StartedWork, run_command

    run_dir = _copy(cnn_run, tmp_path / "a,b=c 'q' [x] é")
    with pytest.raises(Exception) as raised:
        run_command("train", [f"{key}={run_dir}"])
    chain: BaseException | None = raised.value
    while chain is not None and not isinstance(chain, StartedWork):
        chain = chain.__cause__ or chain.__context__
    assert isinstance(chain, StartedWork), raised.value  # Hydra wraps it: the Trainer is built by instantiate


def test_staging_folders_of_dead_processes_are_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistlab.core import config

    monkeypatch.setattr(config, "_STAGING", tmp_path / "mnistlab-hydra-1-mine")
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = tmp_path / f"mnistlab-hydra-{dead.pid}-0123456789abcdef"
    alive = tmp_path / f"mnistlab-hydra-{os.getpid()}-fedcba9876543210"
    for folder in (gone, alive):
        (folder / "job").mkdir(parents=True)
        (folder / "job" / "overrides.yaml").write_text("[]\n")
    config.remove_dead_staging()
    assert not gone.exists() and alive.exists()
