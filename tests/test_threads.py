"""The thread count follows other processes' load: /proc/stat arithmetic, container quotas, the choice, and the
switch between epochs, each checked against a hand count on made-up readings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mnistlab.training import threads
from mnistlab.training.threads import CpuSample, others_load, threads_for, usable_cores


def stat_line(user: int, system: int, idle: int, iowait: int = 0) -> str:
    return f"cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_busy_seconds_counts_every_state_but_idle_and_iowait(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(stat_line(user=300, system=100, idle=5000, iowait=50))
    got = threads.sample(stat)
    assert got is not None
    assert got.busy_s == pytest.approx(400 / threads.os.sysconf("SC_CLK_TCK"))


def test_no_proc_stat_means_no_sample(tmp_path: Path) -> None:
    assert threads.sample(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("busy", "own", "window", "expected"),
    [
        (2.0, 1.0, 1.0, 1.0),  # two cores busy, one of them ours: one core taken by others
        (4.0, 3.9, 2.0, 0.05),  # we were alone
        (1.0, 1.2, 1.0, 0.0),  # tick rounding never gives a negative load
    ],
)
def test_others_load_is_busy_time_less_our_own(busy: float, own: float, window: float, expected: float) -> None:
    before, after = CpuSample(10.0, 100.0, 5.0), CpuSample(10.0 + window, 100.0 + busy, 5.0 + own)
    assert others_load(before, after) == pytest.approx(expected)


def test_a_window_too_short_tells_nothing() -> None:
    assert others_load(CpuSample(0.0, 0.0, 0.0), CpuSample(0.05, 0.1, 0.0)) is None


@pytest.mark.parametrize(
    ("cores", "others", "expected"),
    [(2, 0.0, 2), (2, 0.2, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 1.9, 1), (8, 2.0, 6), (8, 2.2, 6), (8, 2.3, 5), (1, 3, 1)],
)
def test_threads_leave_the_cores_others_use(cores: int, others: float, expected: int) -> None:
    assert threads_for(cores, others) == expected


def test_container_quota_caps_the_cores(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert usable_cores(tmp_path) == min(2, usable_cores(tmp_path / "none"))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == usable_cores(tmp_path / "none")
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert usable_cores(v1) == 1


def test_update_drops_and_restores_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter(
        [
            CpuSample(0.0, 0.0, 0.0),  # start
            CpuSample(10.0, 20.0, 10.0),  # 10 s: 2 cores busy, 1 ours → one core taken by another process
            CpuSample(20.0, 39.0, 28.5),  # 10 s: 1.9 cores busy, 1.85 ours → alone again
            CpuSample(20.1, 39.1, 28.6),  # 0.1 s: too short to tell
        ]
    )
    monkeypatch.setattr(threads, "sample", lambda: next(readings))
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load = threads.LoadAwareThreads()
        assert load.update() == 1 and torch.get_num_threads() == 1
        assert load.update() == 2 and torch.get_num_threads() == 2
        assert load.update() is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_environment_threads_are_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert not threads.user_chose_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.user_chose_threads()
