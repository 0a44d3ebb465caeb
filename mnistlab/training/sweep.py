"""Hydra callback: when a multirun ends, count the failed jobs and say so in the exit status.

Hydra's basic launcher carries on after a failed job, but nothing then tells the user how many failed.
Each job records ``status`` in its metrics.json; this reads them back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
from pathlib import Path
from typing import Any, cast

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from mnistlab.analysis.runs import job_dirs, sweep_statuses
from mnistlab.core.record import (
    HPARAMS,
    NOT_FAILURES,
    RANK_BY,
    REASON,
    STATUS,
    TEST_ACC,
    Status,
    is_completed,
    read_record,
)

log = logging.getLogger("mnistlab.sweep")


def summarize(sweep_dir: Path) -> int:
    """Write the sweep report and end with who won, where the report is and who failed; returns the number
    not completed. Called when a multirun ends, and when a signal interrupts one."""
    report = None
    try:
        from mnistlab.analysis.sweep.report import write_report

        report = write_report(sweep_dir)
    except Exception:  # the report must never cost the sweep its exit status
        log.exception("the sweep report could not be written")
    statuses = sweep_statuses(sweep_dir)
    # a trial a search's pruner stopped, or one queued again after its process died, is not a failure
    failed = {name: m for name, m in statuses.items() if m.get(STATUS) not in (Status.COMPLETED, *NOT_FAILURES)}
    for name, metrics in failed.items():
        log.error("job %s %s: %s", name, metrics.get(STATUS), metrics.get(REASON, ""))
    best = _best(sweep_dir)
    if best:
        print(best, flush=True)
    if report is not None:
        print(f"report: {report.resolve()}", flush=True)
    others = {s: sum(m.get(STATUS) == s for m in statuses.values()) for s in NOT_FAILURES}
    completed = len(statuses) - len(failed) - sum(others.values())
    also = "".join(f", {n} {status}" for status, n in others.items() if n)
    print(f"{completed} of {len(statuses)} runs completed{also}, {len(failed)} failed; in {sweep_dir}", flush=True)
    return len(failed)


def _best(sweep_dir: Path) -> str | None:
    """The sweep's winner, selected on validation. With replicates (seeds, folds) it is the configuration with the
    highest mean val/acc_best over its replicates, not the luckiest seed, and its best job:
    ``best: optim=adam (mean val/acc_best 0.9912 over 3 seeds; its best job 4: val/acc_best 0.9921, test/acc
    0.9918)``. Without: ``best: optim=adam,model.norm=batch (job 3): val/acc_best 0.9921, test/acc 0.9918``."""
    from mnistlab.analysis.runs import load_runs
    from mnistlab.core.factors import hparam_name, read_swept, run_label

    loaded = load_runs(sweep_dir)
    runs = [r for r in loaded if r["metrics"].get(STATUS) == Status.COMPLETED and _has_score(r)]
    if not runs:
        return None
    swept_keys = list(read_swept(sweep_dir) or {})
    found = _best_configuration(sweep_dir, loaded, runs)
    if found is None:
        best = max(runs, key=_score)
        label = run_label(best["overrides"], swept_keys) or " ".join(best["overrides"])
        return f"best: {label} (job {best['job']}): {_scores(best)}"
    config, replicates, members = found
    best = max(members, key=_score)
    keys = [k for k in swept_keys if hparam_name(k) not in replicates]
    hparams = best["metrics"].get(HPARAMS, {})
    label = run_label(best["overrides"], keys) or ",".join(f"{name}={hparams.get(name)}" for name in config)
    mean = statistics.fmean(_score(r) for r in members)
    units: dict[tuple[str, ...], str] = {("seed",): "seed", ("fold",): "fold"}
    unit = units.get(tuple(replicates), "run")
    over = f"{len(members)} {unit}{'s' if len(members) != 1 else ''}"
    return f"best: {label} (mean {RANK_BY} {mean:.4f} over {over}; its best job {best['job']}: {_scores(best)})"


def _has_score(run: dict[str, Any]) -> bool:
    value = run["metrics"].get(RANK_BY)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _score(run: dict[str, Any]) -> float:
    return float(run["metrics"][RANK_BY])


def _scores(run: dict[str, Any]) -> str:
    test = run["metrics"].get(TEST_ACC)
    test_text = f", {TEST_ACC} {test:.4f}" if isinstance(test, int | float) else ""
    return f"{RANK_BY} {_score(run):.4f}{test_text}"


def _best_configuration(
    sweep_dir: Path, loaded: list[dict[str, Any]], runs: list[dict[str, Any]]
) -> tuple[list[str], list[str], list[dict[str, Any]]] | None:
    """The configuration factors, the replicate factors and the completed ``runs`` of the configuration with the
    highest mean val/acc_best; None when the sweep has no replicates (or every configuration ran once)."""
    from mnistlab.analysis.sweep.factors import Factors

    try:
        factors = Factors(sweep_dir, loaded)
    except Exception:  # the closing lines must never cost the sweep its exit status
        log.exception("the sweep's factors could not be read")
        return None
    if not factors.replicates or not factors.config:
        return None
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        hparams = run["metrics"].get(HPARAMS, {})
        groups.setdefault(repr(tuple(hparams.get(name) for name in factors.config)), []).append(run)
    if max(len(members) for members in groups.values()) < 2:
        return None
    best = max(groups.values(), key=lambda members: statistics.fmean(_score(r) for r in members))
    return factors.config, factors.replicates, best


def close_sweep(sweep_dir: Path) -> int:
    """``summarize``, then let go of the sweep dir; returns the number of runs not completed. In a worker of
    the sweep's joblib launcher it does nothing: the sweep's own process closes the books, once."""
    from mnistlab.core.files import release_dir

    if os.environ.get(SWEEP_PID, str(os.getpid())) != str(os.getpid()):
        return 0
    failed = summarize(sweep_dir)
    release_dir(sweep_dir)
    return failed


def _write_factors(config: DictConfig, sweep_dir: Path) -> None:
    """sweep.json (what the sweep varies, for its jobs and its report; what made it) and the HParams tab's one
    experiment. A sweep dir made by another sweep, or holding completed runs that this one would write over, is
    refused in one line that says how to continue or where to go."""
    from omegaconf import OmegaConf

    from mnistlab.core.errors import ConfigError, exit_with
    from mnistlab.core.factors import read_origin, sweep_origin, write_sweep_file
    from mnistlab.training.hparams import write_sweep_experiment

    overrides = [str(o) for o in config.hydra.overrides.task]
    # a DictConfig's container: a dict with str keys
    sweeper = cast("dict[str, Any]", OmegaConf.to_container(config.hydra.sweeper, resolve=False) or {})
    params = sweeper.get("params") or {}
    origin = sweep_origin(overrides, sweeper)
    before = read_origin(sweep_dir)
    search = "objective" in sweeper
    if before is not None and before != origin:
        what = "search" if "objective" in before else "sweep"
        changed = [k for k in ("overrides", "params", "objective", "direction") if before.get(k) != origin.get(k)]
        exit_with(
            ConfigError(
                f"{sweep_dir} holds the runs of another {what} (its {', '.join(changed)} "
                f"{'differs' if len(changed) == 1 else 'differ'}): continue it with "
                f"its own command line, or give this one a new hydra.sweep.dir=…"
            )
        )
    finished = [job.name for job in job_dirs(sweep_dir) if is_completed(read_record(job))]
    # an earlier search's study continues; an empty optuna.db holds none (touched, or left by a refused start)
    study = sweep_dir / "optuna.db"
    continued_search = search and (before is not None or (study.is_file() and study.stat().st_size > 0))
    if finished and not config.get("skip_completed") and not continued_search:
        exit_with(
            ConfigError(
                f"{sweep_dir} holds {len(finished)} completed runs this {'search' if search else 'sweep'} would "
                "write over: add skip_completed=true to finish a sweep there, or give this one a new "
                "hydra.sweep.dir=…"
            )
        )
    write_sweep_experiment(sweep_dir, write_sweep_file(sweep_dir, overrides, params, origin))


def launcher_kind(launcher: Any) -> str:
    """Which of Hydra's launchers a launcher config is: ``basic`` (one job at a time, in this process),
    ``joblib`` (jobs in worker processes, several at once), ``submitit`` (each job a process of its own on a
    cluster's nodes: ``hydra/launcher=slurm``) or ``other``."""
    target = str((launcher or {}).get("_target_", "")).lower()
    if "joblib" in target:
        return "joblib"
    if "submitit" in target:
        return "submitit"
    if target.endswith("basiclauncher") or not target:
        return "basic"
    return "other"


def is_joblib(launcher: Any) -> bool:
    """Whether Hydra's launcher config is ``hydra/launcher=joblib``."""
    return launcher_kind(launcher) == "joblib"


def _stop_idle_workers(config: DictConfig) -> None:
    """With ``hydra/launcher=joblib``, end the worker processes as soon as every job has returned: left to
    the interpreter's exit, each one's own teardown (torch, Lightning) is waited for, ~2 s at the end of every
    sweep. They are idle by then, their jobs' files written and closed."""
    if is_joblib(config.hydra.launcher):
        _stop_workers()


SWEEP_PID = "MNISTLAB_SWEEP_PID"  # the process of a joblib sweep, as its workers inherit it
WORKER_GRACE_S = 30.0  # how long an interrupted joblib sweep waits for its workers to record their jobs


def _workers() -> list[int]:
    """The pids of the joblib launcher's worker processes (loky's executor), none when it has not started."""
    import sys

    executor = getattr(sys.modules.get("joblib.externals.loky.reusable_executor"), "_executor", None)
    return [int(pid) for pid in list(getattr(executor, "_processes", None) or {})]


def _interrupt_workers(sweep_dir: Path, signum: int) -> None:
    """A signal to a joblib sweep's process: each worker gets it too (Ctrl-C reaches them with the terminal's
    process group, a ``kill`` does not), records its job as ``interrupted``, and is then ended; a job that
    never got to record is recorded here. Then the sweep's books are closed once, by this process (the report,
    the summary), and it exits with 128 + the signal's number, as the basic launcher does."""
    import signal
    import sys
    import time

    from mnistlab.core.files import dir_busy
    from mnistlab.core.record import not_completed, write_record

    signal.signal(signum, signal.default_int_handler)  # a second Ctrl-C ends the process at once
    name = signal.Signals(signum).name
    for pid in _workers():
        with contextlib.suppress(OSError):  # a worker that has already gone
            os.kill(pid, signum)
    deadline = time.monotonic() + WORKER_GRACE_S
    while time.monotonic() < deadline and any(dir_busy(job) for job in job_dirs(sweep_dir)):
        time.sleep(0.05)
    _stop_workers()
    for job in job_dirs(sweep_dir):
        record = read_record(job)
        if not dir_busy(job) and (record is None or record.get(STATUS) == Status.RUNNING):
            write_record(job, {**(record or {}), **not_completed(Status.INTERRUPTED, f"{name} before it finished")})
    close_sweep(sweep_dir)
    print(f"interrupted by {name}", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # as mnistlab.core.errors.run_command ends an interrupted run


_PREVIOUS: dict[int, Any] = {}  # the handlers a joblib sweep replaced, restored when it ends


def _catch_signals(sweep_dir: Path) -> None:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only

    def interrupt(signum: int, frame: object) -> None:
        _interrupt_workers(sweep_dir, signum)

    os.environ[SWEEP_PID] = str(os.getpid())
    for signum in (signal.SIGINT, signal.SIGTERM):
        _PREVIOUS[signum] = signal.signal(signum, interrupt)


def _restore_signals() -> None:
    import signal

    for signum, handler in _PREVIOUS.items():
        signal.signal(signum, handler)
    _PREVIOUS.clear()
    os.environ.pop(SWEEP_PID, None)


def _stop_workers() -> None:
    import sys

    executors = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(executors, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=False, kill_workers=True)


class SweepSummary(Callback):
    """Holds the sweep dir for the sweep (a second sweep into it is refused, unless skip_completed=true shares
    it by design), and closes the books at the end: the report, the failures, a non-zero exit status."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # the sweep dir must exist before the sweeper opens anything in it (Optuna's SQLite study)
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if not config.get("skip_completed"):
            from mnistlab.core.errors import BusyError, exit_with
            from mnistlab.core.files import acquire_dir

            try:
                acquire_dir(sweep_dir)
            except BusyError as busy:
                exit_with(busy)
        if is_joblib(config.hydra.launcher):  # SIGINT and SIGTERM close the books here, not in each worker
            _catch_signals(sweep_dir)
        try:
            _write_factors(config, sweep_dir)  # after the lock: a refused sweep writes nothing into the dir
        except SystemExit:
            if not config.get("skip_completed"):
                from mnistlab.core.files import release_dir

                release_dir(sweep_dir)
            raise

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        import sys

        _stop_idle_workers(config)
        _restore_signals()
        if sys.exc_info()[1] is not None:
            # Hydra 1.4 calls this on the way out of a sweep that raised too (1.3 does not): an interrupted job
            # has closed the books itself and its exit status (128 + the signal) must stay the process's
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        # a search tolerates failed trials (its max_failures stops it with an error); a grid sweep does not
        search = (sweep_dir / "search.json").is_file()
        if sweep_dir.is_dir() and close_sweep(sweep_dir) and not search:
            raise SystemExit(1)
