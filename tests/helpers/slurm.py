"""A one-node SLURM cluster of its own for a test module: Debian's slurmctld, slurmd and munged, each with its own
files in a temporary dir (key, socket, slurm.conf passed as SLURM_CONF, state, spool, logs) and free loopback
ports; nothing under /etc is read or touched. Every job is cancelled and every daemon stopped by its pid at the
end, and the dir removed. ``slurm_cluster(nodes=2)`` runs two nodes on this machine (a slurmd each, on ports
of their own): enough for ``srun`` to start one process per node."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.cli import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel")
START_TIMEOUT_S = 60
CPUS = 2


def _binary(name: str) -> str | None:
    """A SLURM or MUNGE program: on the PATH, or in /usr/sbin where Debian puts the daemons."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


@dataclass
class Cluster:
    """A running test cluster: ``env`` is what a client (sbatch, submitit, mnistlab) needs to reach it."""

    root: Path
    nodes: list[str]
    env: dict[str, str]

    @property
    def node(self) -> str:
        """The first node (the only one of a one-node cluster)."""
        return self.nodes[0]

    def run(self, *command: str, check: bool = True) -> str:
        """A client command (``scontrol``, ``squeue``, ``scancel``…) against this cluster; its stdout."""
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=60, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def jobs(self) -> dict[str, str]:
        """Job id → state of every job the controller still knows (finished ones included)."""
        lines = self.run("squeue", "-h", "--states=all", "-o", "%i %T").split()
        return dict(zip(lines[::2], lines[1::2], strict=True))

    def cancel_all(self) -> None:
        """Cancel every job still queued or running and wait (up to 20 s) until none runs: their processes are
        slurmd's children, and a test's leftover job would hold the node's CPUs for the next test."""
        with contextlib.suppress(AssertionError, subprocess.SubprocessError, OSError):
            active = [j for j, state in self.jobs().items() if state in ("PENDING", "RUNNING", "COMPLETING")]
            if active:
                self.run("scancel", *active, check=False)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and any(s in ("RUNNING", "COMPLETING") for s in self.jobs().values()):
                time.sleep(0.2)

    def log(self, name: str, lines: int = 40) -> str:
        """The last lines of a daemon's log (``slurmctld``, ``slurmd-<node>``, ``munged``), for a failing test."""
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def _slurm_conf(root: Path, host: str, nodes: dict[str, int], ctld_port: int) -> str:
    """slurm.conf for ``nodes`` (name → slurmd port), all on this machine (``host``)."""
    node_lines = [
        f"NodeName={name} NodeHostname={host} NodeAddr=127.0.0.1 Port={port} CPUs={CPUS} RealMemory=1000 State=UNKNOWN"
        for name, port in nodes.items()
    ]
    return "\n".join(
        [
            "ClusterName=mnistlabtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={ctld_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            # a requeued job may start again once its credential expires: 5 s here, 120 s by default
            f"AuthInfo=socket={root / 'munge.sock'},cred_expire=5",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool-%n'}",
            f"SlurmctldPidFile={root / 'slurmctld.pid'}",
            f"SlurmdPidFile={root / 'slurmd-%n.pid'}",
            f"SlurmctldLogFile={root / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'slurmd-%n.log'}",
            f"PlugStackConfig={root / 'plugstack.conf'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "MailProg=/bin/true",
            "ReturnToService=2",
            "SchedulerType=sched/builtin",
            "SchedulerParameters=sched_interval=1",  # a job that may start is started within a second
            "KillWait=5",
            "MinJobAge=600",  # finished jobs stay visible to squeue for the module's tests
            "InactiveLimit=0",
            "SlurmdParameters=config_overrides",  # the node has the CPUs below even on a 1-core machine
            *node_lines,
            f"PartitionName=debug Nodes={','.join(nodes)} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the daemon by its pid, SIGKILL if it has not gone within 10 s."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def slurm_cluster(nodes: int = 1) -> Iterator[Cluster]:
    """Yields a cluster whose nodes are idle: one node named as this machine (``hostname -s``), or ``nodes``
    named ``node1``, ``node2``…. Skips the test without the binaries, the [slurm] extra or root (slurmd starts
    each job as its user)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the [slurm] extra is not installed")
    missing = [name for name in (*DAEMONS, *CLIENTS) if _binary(name) is None]
    if missing:
        pytest.skip(f"no {', '.join(missing)}: apt-get install slurm-wlm munge (.ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's slurmd must run as root (it starts each job as its user)")
    root = Path(tempfile.mkdtemp(prefix="mnistlab-slurm-"))
    root.chmod(0o755)  # munged requires its socket's folder to be reachable by everyone
    host = socket.gethostname().split(".")[0]
    names = [host] if nodes == 1 else [f"node{i}" for i in range(1, nodes + 1)]
    (root / "state").mkdir()
    for name in names:
        (root / f"spool-{name}").mkdir()
    (root / "plugstack.conf").write_text("")
    ports: set[int] = set()
    while len(ports) < len(names) + 1:  # slurmctld's and each slurmd's, all different
        ports.add(free_port())
    ctld_port, *slurmd_ports = sorted(ports)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, host, dict(zip(names, slurmd_ports, strict=True)), ctld_port))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    env.pop("SLURM_JOB_ID", None)  # a test run inside a job of another cluster must not look like one of ours
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    processes: list[subprocess.Popen] = []
    cluster = Cluster(root, names, env)
    try:
        munge = [f"--socket={root / 'munge.sock'}", f"--key-file={key}", f"--pid-file={root / 'munged.pid'}"]
        munge += [f"--log-file={root / 'munged.log'}", f"--seed-file={root / 'munged.seed'}"]
        processes.append(_start([_binary("munged") or "munged", "-F", *munge], root / "munged.out", env))
        _wait(lambda: (root / "munge.sock").exists(), processes, cluster, "munged did not create its socket")
        processes.append(_start([_binary("slurmctld") or "slurmctld", "-D", "-f", str(conf)], root / "ctld.out", env))
        slurmd = _binary("slurmd") or "slurmd"
        for name in names:
            processes.append(_start([slurmd, "-D", "-f", str(conf), "-N", name], root / f"slurmd-{name}.out", env))
        idle = lambda: cluster.run("sinfo", "-h", "-N", "-o", "%t", check=False).split() == ["idle"] * len(names)  # noqa: E731
        _wait(idle, processes, cluster)
        yield cluster
    finally:
        if len(processes) == len(DAEMONS) - 1 + len(names):
            cluster.cancel_all()
        for process in reversed(processes):  # the slurmds, slurmctld, then munged
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _wait(
    ready: Callable[[], bool], processes: list[subprocess.Popen], cluster: Cluster, what: str = "the node is not idle"
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready():
        dead = [p.args[0] for p in processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            daemons = ["munged", "slurmctld", *(f"slurmd-{n}" for n in cluster.nodes)]
            logs = "\n".join(f"--- {name}\n{cluster.log(name)}" for name in daemons)
            raise RuntimeError(f"the SLURM test cluster did not start ({what}; exited: {dead}):\n{logs}")
        time.sleep(0.2)
