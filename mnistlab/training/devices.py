"""Which GPU each job of a local parallel sweep (``hydra/launcher=joblib``) trains on, and what a ``-m`` sweep
refuses before it starts.

A job's GPU is a pure function of its job number (round robin over the visible GPUs), so a sweep run again puts
every job on the same device. joblib hands the next job to whichever worker is free, so two jobs that share a
GPU can be running at the same time even when there are as many workers as GPU places: each job therefore
holds one of its GPU's ``speed.jobs_per_gpu`` places (an OS file lock in the sweep dir) while it trains, and
waits for one when they are all taken. A sweep whose launcher would run more jobs at once than the GPUs have
places is refused at its start: those jobs would mostly wait.

Lightning's DDP starts its other ranks by running the command line again, which inside a ``-m`` sweep is the
whole sweep; a sweep on a local launcher whose jobs would start several processes is refused in one line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnistlab.core.errors import ConfigError
from mnistlab.training.sweep import launcher_kind

log = logging.getLogger("mnistlab.train")

CUDA_ACCELERATORS = ("gpu", "cuda")
LOCAL_LAUNCHERS = ("basic", "joblib")  # the launchers whose jobs run on this machine, from this process
SLOTS_DIR = ".gpu-slots"  # in the sweep dir: one lock file per place on a GPU
WAIT_POLL_S = 0.2


def assign_gpu(job_num: int, gpus: Sequence[int]) -> int:
    """The GPU of job ``job_num``: round robin over ``gpus`` (the visible device indices), the same device for
    the same job number every time the sweep runs."""
    if not gpus:
        raise ValueError("no GPU to assign")
    if job_num < 0:
        raise ValueError(f"job number {job_num} < 0")
    return gpus[job_num % len(gpus)]


def jobs_at_once(n_jobs: int | None, cores: int) -> int:
    """How many jobs joblib runs at the same time for its ``n_jobs`` (negative: ``cores + 1 + n_jobs``, so -1 is
    one per core; None: 1, as joblib reads it)."""
    if n_jobs is None or n_jobs == 0:
        return 1
    return max(1, cores + 1 + n_jobs if n_jobs < 0 else n_jobs)


def capacity_error(at_once: int, gpus: int, jobs_per_gpu: int, n_jobs: Any) -> str | None:
    """Why a joblib sweep of CUDA jobs is refused (more jobs at once than the GPUs have places), or None."""
    places = gpus * jobs_per_gpu
    if at_once <= places:
        return None
    if gpus == 0:
        return (
            "the jobs of this sweep train on CUDA (trainer.accelerator) but no CUDA device is visible "
            "(CUDA_VISIBLE_DEVICES, torch.cuda.device_count()): choose trainer=cpu, or run it where a GPU is"
        )
    given = f"hydra.launcher.n_jobs={n_jobs}" + (" (one job per core)" if n_jobs == -1 else "")
    return (
        f"{given} would run {at_once} jobs at once on {gpus} GPU{'s' if gpus != 1 else ''} with "
        f"speed.jobs_per_gpu={jobs_per_gpu}: give hydra.launcher.n_jobs={places}, or raise speed.jobs_per_gpu "
        f"to {math.ceil(at_once / gpus)} to let that many jobs share a GPU"
    )


def cuda_device_count() -> int:
    """Visible CUDA devices (CUDA_VISIBLE_DEVICES applies); without a GPU driver's device files, 0 without
    importing torch (the sweep's own process checks this before any job starts)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return 0
    if not glob.glob("/dev/nvidia[0-9]*") and not os.path.exists("/dev/kfd"):
        return 0
    import torch

    return int(torch.cuda.device_count())


def uses_cuda(trainer: Any, cuda_count: int | None = None) -> bool:
    """Whether a job with this trainer config trains on CUDA: ``gpu``/``cuda``, or ``auto`` where one is."""
    accelerator = str((trainer or {}).get("accelerator", "auto")).lower()
    if accelerator in CUDA_ACCELERATORS:
        return True
    if accelerator != "auto":
        return False
    return (cuda_device_count() if cuda_count is None else cuda_count) > 0


def processes_per_job(trainer: Any) -> int:
    """How many processes Lightning runs for one job of this trainer config: devices × num_nodes (devices as
    Lightning reads them: a count, a list or ``"0,1"`` of indices, ``auto``/-1 for all of the accelerator's)."""
    trainer = trainer or {}
    devices = trainer.get("devices", 1)
    nodes = trainer.get("num_nodes", 1) or 1
    cuda = str(trainer.get("accelerator", "auto")).lower() in (*CUDA_ACCELERATORS, "auto")
    count: int
    if isinstance(devices, bool) or devices is None:
        count = 1
    elif isinstance(devices, int):
        count = devices if devices != -1 else ((cuda_device_count() or 1) if cuda else (os.cpu_count() or 1))
    elif isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            count = max(1, cuda_device_count()) if cuda else 1
        elif text.lstrip("-").isdigit():
            return processes_per_job({**dict(trainer), "devices": int(text)})
        else:
            count = len([d for d in text.split(",") if d.strip()])
    else:  # a list of device indices
        count = len(list(devices))
    return max(1, count) * int(nodes)


def sweep_error(config: Any, cores: int | None = None) -> str | None:
    """Why a ``-m`` sweep with this composed config is refused before its first job, or None."""
    from mnistlab.training.threads import usable_cores

    kind = launcher_kind(config.hydra.launcher)
    if kind not in LOCAL_LAUNCHERS:
        return None
    trainer = config.get("trainer") or {}
    processes = processes_per_job(trainer)
    if processes > 1:
        return (
            f"a -m sweep on the {kind} launcher cannot run jobs of {processes} processes "
            f"(trainer.devices × trainer.num_nodes): Lightning starts each extra rank by running the command line "
            f"again, i.e. the whole sweep; give trainer.devices=1 (and num_nodes=1), or run each configuration as "
            f"its own command"
        )
    # GPU places are a training setting (speed.jobs_per_gpu, taken by ``job_device``): the sweeps of commands
    # without it (evaluate, predict) share the GPU as they always did
    if kind != "joblib" or config.get("speed") is None or not uses_cuda(trainer):
        return None
    launcher = config.hydra.launcher
    n_jobs = launcher.get("n_jobs", -1)
    at_once = jobs_at_once(n_jobs if isinstance(n_jobs, int) else None, cores if cores is not None else usable_cores())
    per_gpu = config.speed.get("jobs_per_gpu")
    if per_gpu != jobs_per_gpu(config.speed):
        return f"speed.jobs_per_gpu={per_gpu} must be a positive integer"
    return capacity_error(at_once, cuda_device_count(), per_gpu, n_jobs)


def check_sweep(config: Any) -> None:
    """``sweep_error`` as one line and exit status 2 (an exception would be a warning: Hydra's callbacks
    swallow them)."""
    from mnistlab.core.errors import exit_with

    error = sweep_error(config)
    if error:
        exit_with(error)


def _take_place(files: list[Any]) -> int | None:
    """The first place whose lock this process gets without waiting; None when all are taken."""
    for slot, f in enumerate(files):
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        return slot
    return None


@contextlib.contextmanager
def gpu_place(slots_dir: Path, gpu: int, jobs_per_gpu: int) -> Iterator[int | None]:
    """Hold one of the ``jobs_per_gpu`` places on ``gpu`` while the block runs (waiting for one when all are
    taken); yields the place's number, or None where the file system has no locks (then nothing is enforced).
    The OS lock goes with a killed process."""
    slots_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open(slots_dir / f"cuda{gpu}-place{i}.lock", "a+b")) for i in range(jobs_per_gpu)]
        slot: int | None = None
        try:
            slot = _take_place(files)
            if slot is None:
                log.info("waiting for a place on cuda:%d (all speed.jobs_per_gpu=%d taken)", gpu, jobs_per_gpu)
            while slot is None:
                time.sleep(WAIT_POLL_S)
                slot = _take_place(files)
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            log.warning("no file locks in %s: speed.jobs_per_gpu is not enforced", slots_dir)
        try:
            yield slot
        finally:
            if slot is not None:
                fcntl.flock(files[slot].fileno(), fcntl.LOCK_UN)


def release_cuda_memory() -> None:
    """A job's tensors are gone once it returns: hand their cached blocks back to the driver, so that the next
    job a reused worker runs (or another process on the GPU) has the memory."""
    import gc
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    gc.collect()
    torch.cuda.empty_cache()


def check_job(trainer: Any) -> None:
    """A job of a sweep on a local launcher that would start several processes is refused (one line, recorded as
    the job's failure): its trainer came from the sweep's own axes, after ``check_sweep`` had passed."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    if hydra is None or hydra.mode != RunMode.MULTIRUN or launcher_kind(hydra.launcher) not in LOCAL_LAUNCHERS:
        return
    if processes_per_job(trainer) > 1:
        raise ConfigError(
            "a job of a -m sweep on a local launcher cannot start several processes (trainer.devices × "
            "trainer.num_nodes > 1): give trainer.devices=1, or run this configuration as its own command"
        )


def jobs_per_gpu(speed: Any) -> int:
    """``speed.jobs_per_gpu`` (a value that is not a positive integer is reported by the job's validation)."""
    value = (speed or {}).get("jobs_per_gpu")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def job_gpu(cfg: Any, hydra: Any) -> int | None:
    """The GPU of this job of a sweep (set as its ``trainer.devices`` and torch's current device), or None when
    Lightning places it as usual: not a joblib sweep, not CUDA, or the devices chosen by hand."""
    from omegaconf import open_dict

    kind = launcher_kind(hydra.launcher)
    if kind != "joblib" or str(cfg.trainer.get("devices", 1)) != "1" or not uses_cuda(cfg.trainer):
        return None
    gpus = list(range(cuda_device_count()))
    if not gpus:
        return None  # trainer.accelerator=gpu without one: Lightning's own error, in the job's record
    gpu = assign_gpu(int(hydra.job.num), gpus)
    import torch

    torch.cuda.set_device(gpu)  # "cuda" without an index means this GPU in this worker from now on
    with open_dict(cfg):
        cfg.trainer.devices = [gpu]
    log.info("job %s on cuda:%d (of %d GPUs)", hydra.job.num, gpu, len(gpus))
    return gpu


@contextlib.contextmanager
def job_device(cfg: Any) -> Iterator[None]:
    """Around one job of a sweep: its GPU (``job_gpu``) and a place on it held while it runs; the CUDA cache
    freed before it (what the worker's previous job left: a failed job's tensors live until its error has been
    recorded) and after it. A single run is left as it is."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    if hydra is None or hydra.mode != RunMode.MULTIRUN:
        yield
        return
    release_cuda_memory()
    try:
        gpu = job_gpu(cfg, hydra)
        if gpu is None:
            yield
        else:
            with gpu_place(Path(hydra.sweep.dir) / SLOTS_DIR, gpu, jobs_per_gpu(cfg.speed)):
                yield
    finally:
        release_cuda_memory()


def device_record(root_device: Any) -> dict[str, str]:
    """What metrics.json says about where the run trained: ``device`` (``cpu``, ``cuda:1``) and, on a GPU, its
    name and the CUDA_VISIBLE_DEVICES it was counted in."""
    record = {"device": str(root_device)}
    if getattr(root_device, "type", None) == "cuda":
        import torch

        record["device_name"] = torch.cuda.get_device_name(root_device)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            record["cuda_visible_devices"] = visible
    return record


class SweepDevices(Callback):
    """Hydra callback: ``check_sweep`` when a ``-m`` sweep starts, before it writes anything into its dir."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_sweep(config)
