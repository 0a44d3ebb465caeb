"""Several processes and machines: DDP over two torchrun "nodes" on loopback trains one run in one run dir;
DDP inside a -m sweep is refused in one line; a joblib sweep of CUDA jobs gives each job its GPU (round robin
on its job number, at most ``speed.jobs_per_gpu`` at a time), checked on a simulated device list."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.cli import FAST, assert_one_error_line, free_port, run_cli
from helpers.runs import metrics

from mnistlab.core.errors import ConfigError, MnistlabError
from mnistlab.training import devices, multinode

# a small MLP on plain MNIST: no BatchNorm, whose per-rank statistics would differ from one process's
TINY = [*FAST, "model=mlp", "model.hidden=[64]", "data=mnist", "seed=3"]


# ---------------------------------------------------------------- GPU per job: pure functions, simulated GPUs


def test_round_robin_over_the_visible_gpus_is_a_function_of_the_job_number():
    gpus = [0, 1, 2]
    placed = [devices.assign_gpu(job, gpus) for job in range(10)]
    assert placed == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert placed == [devices.assign_gpu(job, gpus) for job in range(10)]  # a sweep run again: the same devices
    counts = {gpu: placed.count(gpu) for gpu in gpus}
    assert max(counts.values()) - min(counts.values()) <= 1  # spread evenly
    assert [devices.assign_gpu(job, [0]) for job in range(3)] == [0, 0, 0]
    with pytest.raises(ValueError):
        devices.assign_gpu(0, [])


def test_joblib_jobs_at_once_and_the_refusal_of_too_many_per_gpu():
    assert devices.jobs_at_once(-1, 16) == 16  # joblib's -1: one per core
    assert devices.jobs_at_once(-2, 16) == 15
    assert devices.jobs_at_once(4, 16) == 4
    assert devices.jobs_at_once(None, 16) == 1
    assert devices.capacity_error(2, gpus=2, jobs_per_gpu=1, n_jobs=2) is None
    assert devices.capacity_error(4, gpus=2, jobs_per_gpu=2, n_jobs=4) is None
    message = devices.capacity_error(16, gpus=2, jobs_per_gpu=1, n_jobs=-1)
    assert message is not None and "\n" not in message
    assert "hydra.launcher.n_jobs=-1 (one job per core) would run 16 jobs at once on 2 GPUs" in message
    assert "give hydra.launcher.n_jobs=2, or raise speed.jobs_per_gpu to 8" in message
    assert "no CUDA device is visible" in (devices.capacity_error(1, gpus=0, jobs_per_gpu=1, n_jobs=1) or "")


def test_processes_per_job_as_lightning_counts_them(monkeypatch):
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 4)
    assert devices.processes_per_job({"accelerator": "cpu", "devices": 2}) == 2
    assert devices.processes_per_job({"accelerator": "cpu", "devices": 1, "num_nodes": 2}) == 2
    assert devices.processes_per_job({"accelerator": "cpu", "devices": "auto"}) == 1
    assert devices.processes_per_job({"accelerator": "gpu", "devices": "auto"}) == 4
    assert devices.processes_per_job({"accelerator": "gpu", "devices": [2]}) == 1
    assert devices.processes_per_job({"accelerator": "gpu", "devices": "0,1"}) == 2
    assert devices.processes_per_job({"accelerator": "auto", "devices": 1}) == 1


def test_a_joblib_job_on_cuda_is_set_to_its_gpu(monkeypatch, tmp_path):
    """What a job does with its GPU, simulated: 2 visible GPUs, job 3 → cuda:1, as Lightning's devices=[1] and
    torch's current device; jobs Lightning places itself are left alone."""
    import torch
    from omegaconf import OmegaConf

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 2)
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"}
    hydra = OmegaConf.create({"launcher": joblib, "job": {"num": 3}, "sweep": {"dir": str(tmp_path)}})

    def job(**trainer: object) -> tuple[int | None, object]:
        cfg = OmegaConf.create({"trainer": trainer, "speed": {"jobs_per_gpu": 1}})
        return devices.job_gpu(cfg, hydra), cfg.trainer.devices

    assert job(accelerator="gpu", devices=1) == (1, [1]) and chosen == [1]
    assert job(accelerator="auto", devices=1) == (1, [1])  # auto resolves to CUDA where a GPU is
    assert job(accelerator="cpu", devices=1) == (None, 1)
    assert job(accelerator="gpu", devices=[0]) == (None, [0])  # chosen by hand
    hydra.launcher = {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}
    assert job(accelerator="gpu", devices=1) == (None, 1)  # one job at a time: Lightning's cuda:0
    assert chosen == [1, 1]


def test_a_gpu_never_runs_more_jobs_at_once_than_its_places(tmp_path):
    """joblib hands the next job to whichever worker is free, so jobs sharing a GPU by number can overlap; the
    places (OS file locks) hold each GPU to ``jobs_per_gpu`` jobs at a time. Simulated: 4 workers, 2 GPUs, 2
    places each, 16 jobs of random lengths; the concurrency per GPU is counted independently of the locks."""
    gpus, per_gpu = [0, 1], 2
    running = {gpu: 0 for gpu in gpus}
    peak = {gpu: 0 for gpu in gpus}
    places_seen: set[tuple[int, int | None]] = set()
    guard = threading.Lock()
    rng = random.Random(0)
    lengths = [rng.uniform(0.01, 0.08) for _ in range(16)]

    def job(num: int) -> int:
        gpu = devices.assign_gpu(num, gpus)
        with devices.gpu_place(tmp_path / devices.SLOTS_DIR, gpu, per_gpu) as place:
            with guard:
                running[gpu] += 1
                peak[gpu] = max(peak[gpu], running[gpu])
                places_seen.add((gpu, place))
            time.sleep(lengths[num])
            with guard:
                running[gpu] -= 1
        return gpu

    with ThreadPoolExecutor(max_workers=4) as workers:
        placed = list(workers.map(job, range(16)))
    assert placed == [num % 2 for num in range(16)]
    assert peak == {0: 2, 1: 2}  # the cap held, and was used
    assert places_seen == {(gpu, place) for gpu in gpus for place in range(per_gpu)}

    entered = threading.Event()

    def second_job() -> int | None:
        with devices.gpu_place(tmp_path / devices.SLOTS_DIR, 0, 1) as place:
            entered.set()
            return place

    with ThreadPoolExecutor(max_workers=1) as waiting:
        with devices.gpu_place(tmp_path / devices.SLOTS_DIR, 0, 1):  # the one place taken: the next job waits
            later = waiting.submit(second_job)
            assert not entered.wait(0.5)
        assert later.result(timeout=5) == 0 and entered.is_set()


def test_a_joblib_sweep_with_more_cuda_jobs_at_once_than_gpu_places_is_refused(tmp_path, monkeypatch, capsys):
    from helpers.inprocess import refuse_real_work

    from mnistlab import api

    monkeypatch.chdir(tmp_path)
    refuse_real_work(monkeypatch)
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 2)  # two GPUs, simulated
    args = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "trainer=gpu", "seed=1,2,3"]
    with pytest.raises(MnistlabError, match="could not run"):  # the command's exit status 2, as api.sweep says it
        api.sweep([*args, f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: hydra.launcher.n_jobs=3 would run 3 jobs at once on 2 GPUs with speed.jobs_per_gpu=1: give "
        "hydra.launcher.n_jobs=2, or raise speed.jobs_per_gpu to 2 to let that many jobs share a GPU"
    ]
    assert not (tmp_path / "sweep").exists()  # refused before the sweep wrote anything


def test_a_joblib_sweep_within_the_gpu_places_is_accepted(monkeypatch):
    from hydra import compose, initialize_config_dir

    from mnistlab.core.config import CONFIG_DIR

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 2)
    overrides = ["hydra/launcher=joblib", "trainer=gpu"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="train"):
        ok = compose("train", [*overrides, "hydra.launcher.n_jobs=4", "speed.jobs_per_gpu=2"], return_hydra_config=True)
        too_many = compose("train", [*overrides, "hydra.launcher.n_jobs=-1"], return_hydra_config=True)
        on_cpu = compose("train", ["hydra/launcher=joblib", "trainer=cpu"], return_hydra_config=True)
    assert devices.sweep_error(ok, cores=16) is None
    assert "would run 16 jobs at once on 2 GPUs" in (devices.sweep_error(too_many, cores=16) or "")
    assert devices.sweep_error(on_cpu, cores=16) is None  # CPU jobs: the cores are shared out as before


def test_a_joblib_sweep_of_a_command_without_gpu_places_is_checked_without_an_error(monkeypatch):
    """evaluate shares hydra/default's callbacks but has no speed.jobs_per_gpu (its jobs are not placed on
    GPUs): its sweep's check must neither fail on the missing setting (Hydra would print the error as a
    warning) nor refuse it with advice about a setting it does not have; DDP jobs are still refused."""
    from hydra import compose, initialize_config_dir

    from mnistlab.core.config import CONFIG_DIR

    monkeypatch.setattr(devices, "cuda_device_count", lambda: 1)
    overrides = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "trainer=gpu"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3", job_name="evaluate"):
        evaluate = compose("evaluate", overrides, return_hydra_config=True)
        ddp = compose("evaluate", [*overrides, "trainer.devices=2"], return_hydra_config=True)
    assert "speed" not in evaluate
    assert devices.sweep_error(evaluate, cores=16) is None
    assert "cannot run jobs of 2 processes" in (devices.sweep_error(ddp, cores=16) or "")


# ---------------------------------------------------------------- DDP inside a -m sweep


def test_ddp_inside_a_sweep_is_refused_in_one_line(tiny_data, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "mnistlab.train",
        "-m",
        "trainer=ddp_cpu",
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
        data_dir=tiny_data,
        check=False,
    )
    line = assert_one_error_line(result, "a -m sweep on the basic launcher cannot run jobs of 2 processes")
    assert "give trainer.devices=1" in line
    assert not sweep.exists()


def test_a_swept_ddp_job_fails_with_its_reason_and_the_sweep_goes_on(tiny_data, tmp_path, monkeypatch):
    """The trainer chosen by the sweep itself: the job that would start 2 processes is refused (its record says
    why) and the other one gets to train (stopped there by the test: no Trainer may start here)."""
    from helpers.inprocess import refuse_real_work

    from mnistlab import api

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tiny_data))
    refuse_real_work(monkeypatch)
    result = api.sweep([*TINY, "trainer=cpu,ddp_cpu", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    cpu, ddp = result["runs"]
    assert cpu["status"] == "failed" and "lightning.pytorch.trainer.trainer.Trainer" in cpu["reason"]  # got to train
    assert ddp["status"] == "failed" and "cannot start several processes" in ddp["reason"], ddp["reason"]
    assert not list((tmp_path / "sweep").glob("*/train_ddp_process_*.log"))  # no rank was started


# ---------------------------------------------------------------- torchrun: one run dir, checks in one line


def test_a_rank_other_than_0_follows_rank_0s_run_dir_through_torchruns_store(tmp_path, monkeypatch):
    from torch.distributed import TCPStore

    port = free_port()
    server = TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False)  # as torchrun's agent serves it
    run_dir = tmp_path / "outputs" / "a run, with = and 'quotes'"
    env = {
        "TORCHELASTIC_RUN_ID": "test",
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(multinode, "_STORE", None)
    assert multinode.follow_rank_zero(["prog", "seed=1"]) == ["prog", "seed=1"]  # rank 0 chooses as any run does
    multinode.publish_run_dir(run_dir)
    monkeypatch.setenv("RANK", "1")
    argv = multinode.follow_rank_zero(["prog", "seed=1", "hydra.job.name=x"])
    from mnistlab.core.config import path_value

    assert argv[:2] == ["prog", "seed=1"] and argv[-2:] == [
        "hydra.job.name=train_ddp_process_1",
        "hydra.output_subdir=null",
    ]
    assert path_value(argv[2].partition("=")[2]) == run_dir.resolve()
    given = multinode.follow_rank_zero(["prog", f"hydra.run.dir={tmp_path / 'mine'}"])  # a fixed dir: as given
    assert given[1] == f"hydra.run.dir={tmp_path / 'mine'}"

    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # a restarted group: rank 0 has published nothing yet
    monkeypatch.setattr(multinode, "WAIT_S", 1.0)
    with pytest.raises(MnistlabError) as waited:
        multinode.follow_rank_zero(["prog"])
    assert "rank 1: rank 0 published no run dir within 1 s" in str(waited.value) and "\n" not in str(waited.value)
    with pytest.raises(ConfigError, match="a -m sweep cannot run under torchrun"):
        multinode.follow_rank_zero(["prog", "-m", "seed=1,2"])
    del server


def test_the_trainer_must_match_the_processes_torchrun_started(monkeypatch):
    monkeypatch.setattr(devices, "check_job", lambda trainer: None)  # not a sweep's job, whatever ran before
    for key, value in {"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    multinode.check_world({"devices": 1, "num_nodes": 2})
    with pytest.raises(ConfigError) as wrong:
        multinode.check_world({"devices": 2, "num_nodes": 1})  # the right product, the wrong split
    assert str(wrong.value) == (
        "torchrun started 1 process per node on 2 nodes (WORLD_SIZE=2) but the trainer asks for trainer.devices=2 "
        "× trainer.num_nodes=1: give trainer.devices=1 trainer.num_nodes=2"
    )
    with pytest.raises(ConfigError, match="give trainer=ddp_cpu"):
        multinode.check_world({"devices": 1})  # a one-process preset: it has no num_nodes
    for key in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "NODE_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(ConfigError, match=r"trainer\.num_nodes=2 needs every node started by a launcher"):
        multinode.check_world({"devices": 1, "num_nodes": 2})  # alone it would wait for node 1 forever


def _torchrun_node(port: int, args: list[str], cwd: Path, data_dir: Path, log: Path) -> subprocess.Popen:
    """One "node": ``torchrun --nnodes=2 --nproc-per-node=1`` with c10d rendezvous on loopback, in its own
    process group (stopped by its pid if the test fails)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=127.0.0.1:{port}",
        "--max-restarts=0",
        "-m",
        "mnistlab.train",
        *args,
    ]
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def test_two_torchrun_nodes_train_one_run_in_one_run_dir(tiny_data, tmp_path, monkeypatch):
    """Two torchrun processes on this machine (2 nodes × 1 process, gloo), started with the documented command and
    no hydra.run.dir: one run dir (rank 0's, timestamped), only rank 0 writes. data.batch_size is per process:
    2 ranks at 32 have the global batch of one process at 64, and on a model without dropout or BatchNorm they
    are the same computation (rank r takes elements r, r+2, … of the epoch's permutation, so the two batches of
    32 are the one batch of 64, and DDP averages their gradients): the test metrics equal those of a
    single-process run at batch 64, and a single-process evaluation of the checkpoint."""
    port = free_port()
    args = [*TINY, "trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=2"]
    nodes = [_torchrun_node(port, args, tmp_path, tiny_data, tmp_path / f"node{i}.log") for i in range(2)]
    single_dir = tmp_path / "single"  # the same global batch in one process, trained meanwhile
    single_args = [*TINY, "trainer=cpu", "data.batch_size=64", f"hydra.run.dir={single_dir}"]
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(tiny_data), "OMP_NUM_THREADS": "1"}
    baseline = subprocess.Popen(
        [sys.executable, "-m", "mnistlab.train", *single_args],
        cwd=tmp_path,
        env=env,
        stdout=(tmp_path / "single.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        for process in (*nodes, baseline):
            process.wait(timeout=240)
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
        if baseline.poll() is None:
            baseline.kill()
            baseline.wait()
    logs = "\n".join((tmp_path / f"{name}.log").read_text()[-3000:] for name in ("node0", "node1", "single"))
    assert [process.returncode for process in (*nodes, baseline)] == [0, 0, 0], logs

    run_dirs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs  # both ranks in one run dir
    run = run_dirs[0]
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("metrics.json"))
    assert written == [run.relative_to(tmp_path) / "metrics.json", Path("single/metrics.json")]
    assert (run / "train.log").is_file() and (run / "train_ddp_process_1.log").is_file()  # rank 1 ran there
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (run / "train_ddp_process_1.log").read_text()
    for made in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "report.md", ".hydra/config.yaml"):
        assert (run / made).is_file(), made
    assert len(list(run.glob("events.out.tfevents.*"))) >= 1
    ddp, single = metrics(run), metrics(single_dir)
    assert ddp["status"] == "completed" and ddp["device"] == "cpu" and ddp["epochs"] == 2
    assert ddp["global_step"] == single["global_step"] == 2 * 8  # 500 train images: 8 steps of 64 (2 × 32) an epoch
    assert ddp["test/acc"] == single["test/acc"] and ddp["val/acc_best"] == single["val/acc_best"]
    assert ddp["test/loss"] == pytest.approx(single["test/loss"], rel=1e-4)  # the sums in another order

    from mnistlab import api

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tiny_data))
    evaluated = api.evaluate(
        [
            f"ckpt_path={run}/checkpoints/best.ckpt",
            f"hydra.run.dir={tmp_path / 'eval'}",
            "trainer.enable_progress_bar=false",
        ]
    )
    assert evaluated["test/acc"] == pytest.approx(ddp["test/acc"], abs=1e-6)  # synced over both ranks' halves
    assert evaluated["test/loss"] == pytest.approx(ddp["test/loss"], rel=1e-5)
