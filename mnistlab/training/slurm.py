"""A run as a SLURM job that survives preemption and time limits by itself.

One mechanism requeues a job: submitit's checkpoint protocol (``hydra/launcher=slurm``). SLURM sends the
job its signal ``signal_delay_s`` before the time limit (submitit's ``--signal``, SIGUSR2 unless
``SUBMITIT_PREEMPT_SIGNAL`` says otherwise) or on preemption; ``scancel --signal=USR1`` does the same. mnistlab
stops the run, records how far it got, then lets submitit's handler resubmit the job (the launcher's
``checkpoint()``) and ``scontrol requeue`` it. Lightning's own SLURM auto-requeue is switched off
(``SLURMEnvironment(auto_requeue=False)``): it would save ``hpc_ckpt_*.ckpt`` files and requeue a second time.

The state a requeued job continues from is the run's ``checkpoints/last.ckpt`` (the end of the last finished
epoch), in the same job dir: a restarted job (``SLURM_RESTART_COUNT`` ≥ 1) whose dir was started by the same
SLURM job continues it as ``resume=<dir>`` would, whatever requeued it (the signal above, or
``scontrol requeue`` without one). A job is requeued at most ``hydra.launcher.max_num_timeout`` times; past
that it stops with the reason in its metrics.json.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from mnistlab.core.errors import Interrupted, MnistlabError
from mnistlab.core.files import is_rank_zero
from mnistlab.core.record import REASON, RESUME_WITH, STATUS, Status

log = logging.getLogger("mnistlab.train")

REQUEUES = "requeues"  # the record's count of SLURM requeues (SLURM_RESTART_COUNT)
SLURM = "slurm"  # the record's SLURM job id, array task and node


class Preempted(Interrupted):
    """SLURM's preemption or time-limit signal reached a job of ``hydra/launcher=slurm``."""

    def __init__(self, signum: int, job_id: str | None = None) -> None:
        super().__init__(signum)
        self.job_id = job_id

    def __str__(self) -> str:
        if self.job_id is None:
            return f"{self.name} from SLURM (preemption or time limit)"
        return (
            f"{self.name} from SLURM (preemption or time limit; requeued as job {self.job_id}, which continues from "
            "checkpoints/last.ckpt)"
        )

    def __reduce__(self) -> tuple:
        return (Preempted, (self.signum, self.job_id))


class RequeueLimit(MnistlabError):
    """The job was requeued as many times as ``hydra.launcher.max_num_timeout`` allows."""


def job_id() -> str | None:
    """SLURM's id of this job as ``scontrol`` names it (``<array job>_<task>`` for a task of an array)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def restart_count() -> int:
    """How many times SLURM has requeued this job (0 for its first start, or outside SLURM)."""
    try:
        return max(0, int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0))
    except ValueError:
        return 0


def job_record() -> dict[str, Any]:
    """What a run's metrics.json says about the SLURM job that ran it: nothing outside SLURM."""
    if "SLURM_JOB_ID" not in os.environ:
        return {}
    info = {"job_id": job_id(), "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname()}
    return {SLURM: info, REQUEUES: restart_count()}


def _times(n: int) -> str:
    return f"{n} time{'' if n == 1 else 's'}"


def is_submitit(launcher: Any) -> bool:
    """Whether Hydra's launcher is submitit's (each job a process of its own, on the cluster's nodes)."""
    from mnistlab.training.sweep import launcher_kind

    return launcher_kind(launcher) == "submitit"


def _submitit_job() -> bool:
    """This process runs a job that submitit launched on SLURM (its sbatch script exports the executor)."""
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ


def _submitit_signal() -> signal.Signals:
    """The signal submitit asks SLURM for (``--signal=<it>@signal_delay_s``) and handles in the job."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG")
    return getattr(signal.Signals, f"SIG{name}", signal.SIGUSR2)


def max_requeues() -> int | None:
    """``hydra.launcher.max_num_timeout`` of a submitit launcher (None: no limit of ours)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra: Any = HydraConfig.get()  # a DictConfig at runtime; typed as Hydra's dataclass
    launcher = hydra.get("launcher") or {}
    value = launcher.get("max_num_timeout") if is_submitit(launcher) else None
    return None if value is None else int(value)


def cluster_plugins() -> list[Any]:
    """Lightning's SLURM environment without its auto-requeue (submitit's requeues the job, once), when this
    process runs under SLURM; Lightning would otherwise pick it with auto-requeue on."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from mnistlab.core.errors import ConfigError

    if not SLURMEnvironment.detect():
        return []
    try:
        return [SLURMEnvironment(auto_requeue=False)]
    except RuntimeError as err:  # srun's task layout Lightning cannot use, e.g. --ntasks without --ntasks-per-node
        raise ConfigError(str(err).strip()) from None


def _started_by_this_job(out_dir: Path) -> bool:
    """The run dir's provenance was written by this SLURM job (a requeue keeps the job's id)."""
    from mnistlab.core import provenance

    recorded: Any = provenance.read(out_dir) or {}
    for key in ("machine", "slurm"):  # a file: any of its levels may be something other than a mapping
        recorded = recorded.get(key) if isinstance(recorded, dict) else None
    return isinstance(recorded, dict) and recorded.get("SLURM_JOB_ID") == os.environ.get("SLURM_JOB_ID")


def continue_requeued(cfg: DictConfig, out_dir: Path, previous: dict[str, Any] | None, record: dict[str, Any]) -> bool:
    """In a job SLURM restarted: continue the run it had started in ``out_dir`` from checkpoints/last.ckpt
    (``cfg.resume`` and ``cfg.ckpt_path`` set as ``resume=<dir>`` sets them; from scratch when it stopped before
    its first epoch ended). Returns whether it did. :class:`RequeueLimit` once the job was requeued more often
    than ``hydra.launcher.max_num_timeout`` allows, with what the run had reached kept in ``record``."""
    restarts = restart_count()
    if restarts == 0 or cfg.resume or not _started_by_this_job(out_dir):
        return False
    if previous and previous.get(STATUS) == Status.COMPLETED:  # requeued after it had finished: kept as it is
        log.info("SLURM requeued job %s after its run had completed: %s is kept", job_id(), out_dir)
        with open_dict(cfg):
            cfg.skip_completed = True
        return False
    limit = max_requeues()
    if limit is not None and restarts > limit:
        kept = {k: v for k, v in (previous or {}).items() if k not in (STATUS, REASON)}
        record.update({**kept, **job_record(), RESUME_WITH: f"resume={out_dir}"})
        raise RequeueLimit(
            f"SLURM requeued this job {_times(restarts)}, more than hydra.launcher.max_num_timeout={limit} "
            f"allows: stopped; continue it with resume={out_dir}"
        )
    last = out_dir / "checkpoints" / "last.ckpt"
    with open_dict(cfg):
        cfg.resume = str(out_dir)
        cfg.ckpt_path = str(last) if last.is_file() else None
    where = "from checkpoints/last.ckpt" if last.is_file() else "from the start (no epoch had finished)"
    log.info("SLURM requeued job %s (restart %d): continuing %s %s", job_id(), restarts, out_dir, where)
    return True


@contextlib.contextmanager
def preemption_signals() -> Iterator[None]:
    """Within the block, in a job submitit launched on SLURM, SIGUSR1 and submitit's signal raise
    :class:`Preempted` (on rank 0; the other ranks wait for the requeue's SIGTERM), so that the run stops and
    records itself before :func:`requeue` hands the job back to submitit."""
    if not _submitit_job() or threading.current_thread() is not threading.main_thread():
        yield
        return
    own = _submitit_signal()
    _SUBMITIT_HANDLER[0] = signal.getsignal(own)

    def preempted(signum: int, frame: object) -> None:
        if is_rank_zero():
            for s in handled:  # once: a second signal while the run stops changes nothing
                signal.signal(s, signal.SIG_IGN)
            raise Preempted(signum)

    handled = {signal.SIGUSR1, own}
    previous = {s: signal.signal(s, preempted) for s in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_SUBMITIT_HANDLER: list[Any] = [None]  # submitit's handler of its signal, as the job found it


def requeue(
    cfg: DictConfig,
    record: dict[str, Any],
    stop: Preempted,
    record_failure: Callable[..., None],
) -> None:
    """After ``stop`` unwound the run: requeue the job through submitit's handler (the launcher's checkpoint,
    then ``scontrol requeue``) and record ``interrupted`` with the new job, then raise ``stop`` (the process ends
    with 128 + the signal's number, and SLURM starts the job again). Past ``hydra.launcher.max_num_timeout``
    requeues, or when submitit declines, the run is recorded ``failed`` with why and the job ends."""
    out_dir = Path(cfg.paths.output_dir)
    record[RESUME_WITH] = f"resume={out_dir}"
    limit, restarts = max_requeues(), restart_count()
    if limit is not None and restarts >= limit:
        why = RequeueLimit(
            f"{stop.name} from SLURM (preemption or time limit) after {restarts} of the "
            f"hydra.launcher.max_num_timeout={limit} requeues it allows: not requeued; continue it with "
            f"resume={out_dir}"
        )
        record_failure(cfg, record, why)
        log.error("%s", why)
        return
    handler = _SUBMITIT_HANDLER[0]
    declined: str | None = None if callable(handler) else "submitit's signal handler is not installed"
    # the requeue sends SIGTERM at once: ignored from here, the process ends once the record is written
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if callable(handler):
        try:
            handler(_submitit_signal(), None)
            declined = "submitit's handler returned without requeueing"
        except SystemExit:  # submitit requeued the job and asks the process to end
            stop.job_id = job_id()
        except Exception as err:  # submitit's UncompletedJobError: it declined, and says why
            declined = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if declined is not None:
        signal.signal(signal.SIGTERM, previous)
        why = RequeueLimit(f"{stop.name} from SLURM (preemption or time limit), not requeued: {declined}")
        record_failure(cfg, record, why)
        log.error("%s; continue it with resume=%s", why, out_dir)
        return
    record_failure(cfg, record, stop, status=Status.INTERRUPTED)
    log.warning("stopped by %s", stop)
    raise stop
