"""How many CPU threads a training job uses when the user did not say: the cores other processes leave free.

torch's OpenMP threads wait for each other at every parallel region. When another process takes one of two
cores, a two-thread job has one thread descheduled half the time and the other spinning for it: an epoch then
takes 2–5× as long as the same epoch on one thread. So the thread count follows the load actually measured:
``/proc/stat`` says how busy every core was over a window, this process's own CPU time is taken out, and what is
left is other processes' load. The first window is the start-up (imports and composition, before torch runs
anything); later windows are the training epochs, so a job adapts when a competing process starts or ends.

The user's choice always wins: ``speed.threads``, ``OMP_NUM_THREADS`` or a joblib launcher's share of the cores.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("mnistlab")

MIN_WINDOW_S = 0.2  # shorter windows say little: /proc/stat counts in ticks of 10 ms
BUSY_MARGIN = 0.25  # another process using under a quarter of a core (an idle browser) leaves the core free


@dataclass(frozen=True)
class CpuSample:
    """What the machine's cores and this process had done by ``wall`` (seconds)."""

    wall: float
    busy_s: float  # CPU seconds of every core spent not idle, all processes
    own_s: float  # CPU seconds of this process, all its threads


def _busy_seconds(stat: str) -> float | None:
    """Busy CPU seconds of all cores from the ``cpu`` line of /proc/stat (None where there is none)."""
    for line in stat.splitlines():
        if line.startswith("cpu "):
            ticks = [int(v) for v in line.split()[1:]]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
            busy = sum(ticks[:8]) - idle  # user nice system idle iowait irq softirq steal; guest is in user
            return busy / (os.sysconf("SC_CLK_TCK") or 100)
    return None


def sample(stat_path: Path = Path("/proc/stat")) -> CpuSample | None:
    """The machine's and this process's CPU time now; None where /proc is not there (macOS, Windows)."""
    try:
        busy = _busy_seconds(stat_path.read_text())
    except (OSError, ValueError):
        return None
    if busy is None:
        return None
    return CpuSample(time.monotonic(), busy, time.process_time())


def others_load(before: CpuSample, after: CpuSample) -> float | None:
    """Cores kept busy by other processes between two samples (None: window too short to tell)."""
    window = after.wall - before.wall
    if window < MIN_WINDOW_S:
        return None
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    return max(0.0, others / window)


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may run on: its CPU affinity, capped by a container's CPU quota (cgroup v2 or v1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota: float | None = None
    try:
        text = (cgroup_root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            quota = int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        try:
            limit = int((cgroup_root / "cpu" / "cpu.cfs_quota_us").read_text())
            period = int((cgroup_root / "cpu" / "cpu.cfs_period_us").read_text())
            quota = limit / period if limit > 0 and period > 0 else None
        except (OSError, ValueError):
            quota = None
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def threads_for(cores: int, others: float) -> int:
    """Threads that will not wait for a descheduled sibling: the cores left once other processes' load, less a
    margin for light background work, is taken out; at least one."""
    taken = max(0, math.ceil(others - BUSY_MARGIN))
    return max(1, min(cores, cores - taken))


class LoadAwareThreads:
    """The thread count of this process, chosen from the load measured since the last choice."""

    def __init__(self) -> None:
        self.last = sample()

    def update(self) -> int | None:
        """Set torch's threads for the load seen since the previous call; the new count, or None when it stays."""
        import torch

        now = sample()
        before, self.last = self.last, now
        if before is None or now is None:
            return None
        others = others_load(before, now)
        if others is None:
            self.last = before  # keep the longer window for the next call
            return None
        cores = usable_cores()
        wanted = threads_for(cores, others)
        if wanted == torch.get_num_threads():
            return None
        torch.set_num_threads(wanted)
        log.info(
            "%d thread%s for %d core%s: other processes keep %.1f core%s busy (speed.threads=N to choose)",
            wanted,
            "" if wanted == 1 else "s",
            cores,
            "" if cores == 1 else "s",
            others,
            "" if round(others, 1) == 1 else "s",
        )
        return wanted


_LOAD: LoadAwareThreads | None = None


def start_measuring() -> None:
    """Take the first sample: called when the command starts, so that start-up is the first window."""
    global _LOAD
    if _LOAD is None:
        _LOAD = LoadAwareThreads()


def load_aware() -> LoadAwareThreads:
    start_measuring()
    assert _LOAD is not None
    return _LOAD


def user_chose_threads() -> bool:
    """The environment fixed the thread count (OMP_NUM_THREADS, MKL_NUM_THREADS): leave it alone."""
    return any(os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))
