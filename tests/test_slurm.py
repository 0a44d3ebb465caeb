"""Sweeps on a real one-node SLURM cluster (``tests/helpers/slurm.py``) through ``hydra/launcher=slurm``
(submitit): every job a SLURM job, the sweep's books closed when all are done, and jobs that SLURM signals or
requeues continuing from their last checkpoint by themselves; and one DDP run started by ``srun`` on a
two-node cluster. Checked as a user sees them: files, exit status, and SLURM's own account of the jobs
(squeue, scontrol)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.cli import FAST, run_cli
from helpers.data import write_tiny_dataset
from helpers.runs import metrics
from helpers.slurm import Cluster, slurm_cluster

# what the docs' commands pass besides the sweep: the launcher and its knobs
SLURM = ["-m", "hydra/launcher=slurm"]
TINY = [*FAST, "model=mlp", "model.hidden=[64]", "data=mnist", "optim=sgd"]


@pytest.fixture(scope="module")
def running_cluster() -> Iterator[Cluster]:
    with slurm_cluster() as running:
        yield running


@pytest.fixture
def cluster(running_cluster: Cluster) -> Iterator[Cluster]:
    """The module's cluster; a test that failed half-way leaves no job behind to hold the node's CPUs."""
    yield running_cluster
    running_cluster.cancel_all()


@pytest.fixture(scope="module")
def epoch_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough images for an epoch of about a second: time to signal a job between two epochs."""
    return write_tiny_dataset(tmp_path_factory.mktemp("slurm-data"), n_train=6000, n_test=200)


def _provenance(run_dir: Path) -> dict:
    return json.loads((run_dir / "provenance.json").read_text())


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen | None, what: str, timeout: float = 120) -> None:
    """Until ``condition()``; fails when ``process`` (the sweep's command) ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        ended = process is not None and process.poll() is not None
        if ended or time.monotonic() > deadline:
            output = process.stdout.read() if ended and process and process.stdout else ""
            raise AssertionError(f"{what}: never happened (exit {process and process.poll()})\n{output[-3000:]}")
        time.sleep(0.1)


def _start_sweep(cluster: Cluster, args: list[str], data: Path, cwd: Path) -> subprocess.Popen:
    env = {**cluster.env, "PYTHONUNBUFFERED": "1", "MNISTLAB_DATA_DIR": str(data)}
    command = [sys.executable, "-m", "mnistlab.train", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _record(run_dir: Path) -> dict:
    try:
        return metrics(run_dir)
    except (OSError, ValueError):
        return {}


def _job_log(sweep: Path, job_id: str) -> str:
    """What the job printed, in submitit's folder (every start of a requeued job appends to it)."""
    return "".join(p.read_text(errors="replace") for p in sorted(sweep.glob(f".submitit/{job_id}/*_log.*")))


@pytest.mark.slow
def test_a_sweep_runs_each_job_as_a_slurm_job_and_closes_its_books(cluster, tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    # the fourth job diverges at run time (its learning rate): failed, the others complete
    args = [*SLURM, *TINY, "trainer.max_epochs=1", "optim.lr=0.05,0.1,0.2,1e12", f"hydra.sweep.dir={sweep}"]
    result = run_cli("mnistlab.train", *args, data_dir=tiny_data, cwd=tmp_path, env=cluster.env, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]  # as a local sweep with a failed job
    assert result.stdout.strip().splitlines()[-1] == f"3 of 4 runs completed, 1 failed; in {sweep}", output[-3000:]
    assert f"report: {sweep / 'report.md'}" in result.stdout and (sweep / "report.md").is_file()
    assert "Traceback" not in output

    records = [metrics(sweep / str(job)) for job in range(4)]
    assert [r["status"] for r in records] == ["completed"] * 3 + ["failed"]
    assert "training loss is" in records[3]["reason"]
    # SLURM's own account: one array of four tasks, all ended (a task may still be leaving), on this node
    ours = [r["slurm"]["job_id"] for r in records]
    ended = lambda: all(cluster.jobs().get(job) == "COMPLETED" for job in ours)  # noqa: E731
    _wait_for(ended, None, "the array's end", timeout=60)
    jobs = cluster.jobs()
    for job, record in enumerate(records):
        slurm = record["slurm"]
        array_id, task = slurm["job_id"].split("_")
        assert task == str(job) and jobs[slurm["job_id"]] == "COMPLETED", jobs
        assert slurm["node"] == cluster.node and record["requeues"] == 0
        machine = _provenance(sweep / str(job))["machine"]["slurm"]
        assert machine["SLURM_ARRAY_JOB_ID"] == array_id and machine["SLURM_ARRAY_TASK_ID"] == str(job)
        assert machine["SLURMD_NODENAME"] == cluster.node
        shown = cluster.run("scontrol", "show", "job", slurm["job_id"])
        assert f"NodeList={cluster.node}" in shown and f"JobId={machine['SLURM_JOB_ID']} " in shown
    report = (sweep / "report.md").read_text()
    assert "training loss is" in report  # the failure is listed with its reason
    assert len({r["slurm"]["job_id"].split("_")[0] for r in records}) == 1


@pytest.mark.slow
def test_a_signalled_or_requeued_job_continues_from_its_last_checkpoint(cluster, epoch_data, tmp_path):
    """SIGUSR1 mid-run (as ``scancel --signal=USR1``, or SLURM before a time limit): the run stops, records it,
    submitit requeues the job, and the new start continues from last.ckpt; ``scontrol requeue`` (no signal,
    SIGTERM) likewise. It ends completed with the epochs of an uninterrupted run and counts its requeues."""
    sweep = tmp_path / "sweep"
    epochs = 6
    args = [*SLURM, *TINY, f"trainer.max_epochs={epochs}", "data.val_size=500", f"hydra.sweep.dir={sweep}"]
    process = _start_sweep(cluster, args, epoch_data, tmp_path)
    run = sweep / "0"
    last = run / "checkpoints" / "last.ckpt"
    try:
        _wait_for(last.is_file, process, "the first epoch's last.ckpt")
        job_id = _provenance(run)["machine"]["slurm"]["SLURM_JOB_ID"]
        cluster.run("scancel", "--signal=USR1", job_id)
        _wait_for(lambda: _record(run).get("status") == "interrupted", process, "the preempted run's record")
        stopped = _record(run)
        assert f"SIGUSR1 from SLURM (preemption or time limit; requeued as job {job_id}" in stopped["reason"]
        assert stopped["resume_with"] == f"resume={run}"
        finished = re.search(r"after (\d+) finished epochs", stopped["reason"])
        assert finished and 1 <= int(finished.group(1)) < epochs, stopped["reason"]  # stopped mid-run

        _wait_for(lambda: len(_provenance(run).get("resumes", [])) == 1, process, "the requeued job's start")
        mtime = last.stat().st_mtime
        _wait_for(lambda: last.stat().st_mtime > mtime, process, "an epoch of the second start")
        cluster.run("scontrol", "requeue", job_id)
        output = process.communicate(timeout=180)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output[-3000:]
    assert output.strip().splitlines()[-1] == f"1 of 1 runs completed, 0 failed; in {sweep}"
    record = metrics(run)
    assert record["status"] == "completed" and record["epochs"] == epochs and len(record["val_curve"]) == epochs
    assert record["requeues"] == 2 and record["slurm"]["job_id"] == job_id
    assert "Restarts=2 " in cluster.run("scontrol", "show", "job", job_id)  # SLURM's count
    log = _job_log(sweep, job_id)
    restored = re.findall(r"Restoring states from the checkpoint path at (\S+)", log)
    assert [p for p in restored if p.endswith("last.ckpt")] == [str(last)] * 2, log[-3000:]  # both later starts
    # Lightning's own auto-requeue neither armed nor acted (it would save hpc_ckpt files and requeue again)
    assert "SLURM auto-requeueing enabled" not in log and not list(sweep.rglob("hpc_ckpt_*"))


@pytest.mark.slow
def test_a_job_requeued_more_often_than_allowed_stops_with_the_reason(cluster, epoch_data, tmp_path):
    """``hydra.launcher.max_num_timeout`` caps the requeues: past it, the signal stops the job (failed, with why
    and how to continue), SLURM does not start it again, and the sweep says so."""
    sweep = tmp_path / "sweep"
    args = [*SLURM, "hydra.launcher.max_num_timeout=0", *TINY, "trainer.max_epochs=6", "data.val_size=500"]
    process = _start_sweep(cluster, [*args, f"hydra.sweep.dir={sweep}"], epoch_data, tmp_path)
    run = sweep / "0"
    try:
        _wait_for((run / "checkpoints" / "last.ckpt").is_file, process, "the first epoch's last.ckpt")
        job_id = _provenance(run)["machine"]["slurm"]["SLURM_JOB_ID"]
        cluster.run("scancel", "--signal=USR2", job_id)  # the launcher's own signal (sbatch --signal=USR2@…)
        output = process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, output[-3000:]
    assert output.strip().splitlines()[-1] == f"0 of 1 runs completed, 1 failed; in {sweep}"
    record = metrics(run)
    assert record["status"] == "failed" and record["requeues"] == 0
    stopped_after = record["epochs"]
    expected = "SIGUSR2 from SLURM (preemption or time limit) after 0 of the hydra.launcher.max_num_timeout=0 requeues"
    assert expected in record["reason"] and "not requeued" in record["reason"], record["reason"]
    assert record["resume_with"] == f"resume={run}"
    assert "Restarts=0 " in cluster.run("scontrol", "show", "job", job_id)

    # requeued by hand all the same (no signal): the new start stops at once, saying why
    cluster.run("scontrol", "requeue", job_id)
    _wait_for(lambda: _record(run).get("requeues") == 1, None, "the refused start's record", timeout=60)
    record = metrics(run)
    assert record["status"] == "failed" and record["resume_with"] == f"resume={run}"
    expected = "SLURM requeued this job 1 time, more than hydra.launcher.max_num_timeout=0 allows: stopped"
    assert expected in record["reason"], record["reason"]
    assert record["epochs"] == stopped_after  # nothing trained again


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    with slurm_cluster(nodes=2) as running:
        yield running


@pytest.mark.slow
def test_srun_on_two_nodes_trains_one_ddp_run_written_by_rank_zero(two_nodes, tiny_data, tmp_path):
    """``srun`` starts ``mnistlab-train`` once per node; Lightning's SLURM environment makes the two processes one
    DDP run (ranks from SLURM_PROCID): one run dir, written by rank 0, every epoch shared by both processes."""
    run = tmp_path / "run"
    srun = ["srun", "--nodes=2", "--ntasks-per-node=1", sys.executable, "-m", "mnistlab.train"]
    ddp = ["trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=2", *TINY, f"hydra.run.dir={run}"]
    # the test's node names are not in DNS: the processes meet on this machine
    env = {**two_nodes.env, "MNISTLAB_DATA_DIR": str(tiny_data), "MASTER_ADDR": "127.0.0.1"}
    result = subprocess.run([*srun, *ddp], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    record = metrics(run)
    assert record["status"] == "completed" and record["epochs"] == 2
    # 500 training images in batches of 32: 16 steps an epoch in one process, 8 in each of two
    assert record["global_step"] == 2 * 8
    assert record["slurm"]["node"] == "node1"  # rank 0 (SLURM_PROCID 0) ran on the first node
    assert _provenance(run)["machine"]["slurm"]["SLURMD_NODENAME"] == "node1"
    assert [p.parent for p in tmp_path.rglob("metrics.json")] == [run]  # one run dir, no other
    assert not (tmp_path / "outputs").exists()

    # --ntasks alone: Lightning cannot place the ranks; each process says so in one line
    other = tmp_path / "ntasks"
    refused = [*srun[:1], "--ntasks=2", *srun[3:], *ddp[:-1], f"hydra.run.dir={other}"]
    result = subprocess.run(refused, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    assert errors and all("Use `--ntasks-per-node=2` instead" in line for line in errors), result.stderr[-3000:]


def test_lightnings_srun_hint_is_not_printed_and_its_other_warnings_are():
    """Where SLURM is installed, Lightning warns in every run started without srun; a run is meant to be one
    process then, so that hint alone is silenced."""
    import warnings

    from lightning.fabric.plugins.environments.slurm import SLURMEnvironment
    from lightning.fabric.utilities.rank_zero import rank_zero_warn

    from mnistlab.core.quiet import quiet_console

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_console()
        rank_zero_warn("The `srun` command is available on your system but is not used. HINT: …")
        rank_zero_warn("The `srun` command exits with an error")  # another message: shown
        SLURMEnvironment._validate_srun_used()  # the hint itself, where srun is on the PATH
    assert [str(w.message) for w in caught] == ["The `srun` command exits with an error"]


@pytest.mark.parametrize(
    "provenance",
    ['{"machine": "a string"}', '{"machine": {"slurm": ["42"]}}', '{"machine": null}', "[1, 2]", "not json"],
)
def test_a_requeued_job_with_a_damaged_provenance_starts_afresh_without_a_traceback(provenance, tmp_path, monkeypatch):
    """provenance.json is a file: whatever shape it has, a restarted job only continues a run dir whose record
    names this very SLURM job, and anything else is a new start (never an AttributeError)."""
    from omegaconf import OmegaConf

    from mnistlab.training import slurm

    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    (tmp_path / "provenance.json").write_text(provenance)
    cfg = OmegaConf.create({"resume": None, "ckpt_path": None})
    assert slurm.continue_requeued(cfg, tmp_path, None, {}) is False
    assert cfg.resume is None and cfg.ckpt_path is None

    (tmp_path / "provenance.json").write_text(json.dumps({"machine": {"slurm": {"SLURM_JOB_ID": "42"}}}))
    assert slurm.continue_requeued(cfg, tmp_path, None, {}) is True  # the genuine record: continued
    assert cfg.resume == str(tmp_path) and cfg.ckpt_path is None  # no epoch had finished: from the start
