"""Runs started by ``torchrun`` on one or several nodes: one run dir for all ranks, and trainer settings that match
the processes torchrun started.

torchrun starts ``python -m mnistlab.train …`` once per process on every node, each composing its own config;
the default run dir (``outputs/<date>/<time with microseconds>``) would differ between them. Rank 0 chooses the
run dir as any run does and publishes it in torchrun's own key-value store (the TCPStore at
``MASTER_ADDR:MASTER_PORT`` that ``init_process_group`` uses next); every other rank waits for it and runs in that
dir (as Lightning's own DDP launcher does for the ranks it starts: its log is ``train_ddp_process_<rank>.log``,
and it writes no ``.hydra/`` files). A ``hydra.run.dir=`` given on the command line is used as given.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from mnistlab.core.errors import ConfigError, MnistlabError

WAIT_S = 300.0  # how long a rank waits for rank 0's run dir (all nodes have joined torchrun's rendezvous by then)
INFO_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "--version", "--shell-completion", "-sc")
_STORE: Any = None  # rank 0's store, kept open: init_process_group shares its server (multi-tenant)


def under_torchrun() -> bool:
    """Whether torchrun (torch.distributed.elastic) started this process."""
    return all(k in os.environ for k in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"))


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _key() -> str:
    """Per torchrun run and restart: a restarted group agrees afresh."""
    return f"mnistlab/run_dir/{os.environ['TORCHELASTIC_RUN_ID']}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def _store(timeout_s: float) -> Any:
    """A client of torchrun's store; rank 0 serves it where torchrun's agent does not (the server is then shared
    with the process group Lightning creates: same port, multi-tenant)."""
    from torch.distributed import TCPStore

    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True)
    return TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        is_master=_rank() == 0 and not agent,
        timeout=timedelta(seconds=timeout_s),
        wait_for_workers=False,
        multi_tenant=True,
    )


def _given_run_dir(argv: list[str]) -> str | None:
    """The ``hydra.run.dir=`` of the command line, when it names one fixed place (no interpolation)."""
    given = [a.partition("=")[2] for a in argv if a.startswith("hydra.run.dir=")]
    return given[-1] if given and "${" not in given[-1] else None


def follow_rank_zero(argv: list[str]) -> list[str]:
    """Under torchrun: a ``-m`` sweep is refused (each process would run the whole sweep); a rank other than 0
    gets rank 0's run dir (``hydra.run.dir``), its own log file and no ``.hydra/`` files. ``argv[0]`` is the
    program."""
    if not under_torchrun() or any(a in INFO_FLAGS for a in argv[1:]):
        return argv
    if any(a in ("-m", "--multirun") or a.startswith("hydra.mode=MULTIRUN") for a in argv[1:]):
        raise ConfigError(
            "a -m sweep cannot run under torchrun: every process would run the whole sweep; start one torchrun "
            "per configuration (a shell loop over the overrides)"
        )
    rank = _rank()
    if rank == 0:
        return argv
    from mnistlab.core.config import hydra_quoted

    run_dir = _given_run_dir(argv) or hydra_quoted(wait_for_run_dir(WAIT_S))
    own = ("hydra.run.dir=", "hydra.job.name=", "hydra.output_subdir=")
    kept = [a for a in argv[1:] if not a.startswith(own)]
    return [
        argv[0],
        *kept,
        f"hydra.run.dir={run_dir}",
        f"hydra.job.name=train_ddp_process_{rank}",
        "hydra.output_subdir=null",
    ]


def wait_for_run_dir(timeout_s: float) -> str:
    """Rank 0's run dir, from torchrun's store (a rank other than 0, before Hydra composes anything)."""
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    try:
        store = _store(timeout_s)
        return bytes(store.get(_key())).decode()
    except (RuntimeError, OSError) as err:  # DistStoreError (a timeout, the server gone) is a RuntimeError
        raise MnistlabError(
            f"rank {_rank()}: rank 0 published no run dir within {timeout_s:.0f} s in torchrun's store at {where} "
            f"({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}): see rank 0's output "
            "(it stopped, or never started), or give the same hydra.run.dir=… on every node"
        ) from None


def publish_run_dir(run_dir: Path) -> None:
    """Rank 0 under torchrun: the run dir, for the other ranks (``follow_rank_zero``)."""
    global _STORE
    if not under_torchrun() or _rank() != 0:
        return
    if _STORE is None:
        _STORE = _store(WAIT_S)
    _STORE.set(_key(), str(Path(run_dir).resolve()))


def check_world(trainer: Any) -> None:
    """Under torchrun, ``trainer.devices`` must be torchrun's processes per node and ``trainer.num_nodes`` its
    nodes (Lightning checks only their product, and a wrong split names the wrong node ranks); several nodes
    need a launcher; a job of a local sweep runs one process (``devices.check_job``). One line that says what
    to give."""
    from mnistlab.training.devices import check_job

    check_job(trainer)
    if not under_torchrun():
        nodes = trainer.get("num_nodes", 1) or 1
        started = ("SLURM_PROCID", "NODE_RANK", "GROUP_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
        if nodes > 1 and not any(k in os.environ for k in started):
            raise ConfigError(
                f"trainer.num_nodes={nodes} needs every node started by a launcher, or this process would wait "
                "for them forever: run the command under torchrun (--nnodes) or srun on each node, or set "
                "NODE_RANK, MASTER_ADDR and MASTER_PORT yourself"
            )
        return
    world = int(os.environ["WORLD_SIZE"])
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    nodes = max(1, world // max(1, per_node))
    devices, num_nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if isinstance(devices, bool) or not isinstance(devices, int | str) or not str(devices).isdigit():
        return  # a list of indices, or auto: Lightning counts them
    if (int(devices), num_nodes) == (per_node, nodes):
        return
    how = "trainer=ddp_cpu (gloo) or trainer=ddp (NCCL) with " if "num_nodes" not in trainer else ""
    raise ConfigError(
        f"torchrun started {per_node} process{'es' if per_node != 1 else ''} per node on {nodes} "
        f"node{'s' if nodes != 1 else ''} (WORLD_SIZE={world}) but the trainer asks for trainer.devices={devices} × "
        f"trainer.num_nodes={num_nodes}: give {how}trainer.devices={per_node} trainer.num_nodes={nodes}"
    )
