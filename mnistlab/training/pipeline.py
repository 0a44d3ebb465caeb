"""One training run: compose → validate → build data, task and trainer → LR finder → fit → test on the best
checkpoint → ``metrics.json``. Heavy imports (torch, Lightning) happen inside, so ``--help`` answers at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

import mnistlab.core.factors  # noqa: F401  (registers the run-name resolvers of the logger configs)
from mnistlab.core.config import build, build_all, settle_run_config, to_plain
from mnistlab.core.errors import first_line, user_error
from mnistlab.core.fields import validate
from mnistlab.core.files import is_rank_zero, write_json_atomic
from mnistlab.core.record import (
    BEST_EPOCH,
    EPOCHS,
    FINISHED_AT,
    HPARAMS,
    RANK_BY,
    REASON,
    RESUME_WITH,
    STATUS,
    TEST_ACC,
    TRAIN_TIME_S,
    VAL_CURVE,
    WALL_TIME_S,
    Status,
    read_record,
    write_record,
)

if TYPE_CHECKING:  # only for the checker: the heavy modules are imported inside the functions
    import lightning as L
    from lightning.pytorch.loggers import Logger

    from mnistlab.data.base import InMemoryDataModule
    from mnistlab.tasks.base import ImageTask
    from mnistlab.training.callbacks.run_stats import RunStats

log = logging.getLogger("mnistlab.train")


@dataclass
class Run:
    """What one run is made of, built from the composed command-line config."""

    cfg: DictConfig
    out_dir: Path
    datamodule: InMemoryDataModule
    module: ImageTask
    trainer: L.Trainer
    loggers: list[Logger]
    run_stats: RunStats


def build_callbacks(cfg: DictConfig, progress: dict[str, Any]) -> list[Any]:
    from mnistlab.training.callbacks import EpochSeed, RunStats, StoreRunConfig

    callbacks = build_all(cfg.callbacks)
    if cfg.trainer.get("enable_progress_bar") is False:  # Lightning refuses a progress bar it was told not to use
        from lightning.pytorch.callbacks import ProgressBar

        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if cfg.ema.decay is not None:  # first: the callbacks after it (diagnostics, checkpoints) see the average
        from mnistlab.training.callbacks import WeightAverage

        callbacks.insert(0, WeightAverage(decay=float(cfg.ema.decay)))
    callbacks = [*callbacks, RunStats(progress), StoreRunConfig(to_plain(cfg)), EpochSeed(cfg.seed)]
    if follows_load(cfg):
        from mnistlab.training.callbacks import FollowLoad

        callbacks.append(FollowLoad())
    return callbacks


def build_run(cfg: DictConfig, progress: dict[str, Any]) -> Run:
    """The data (set up: the task needs its input shape, classes and train statistics), the task with the
    registered model, the loggers and the trainer."""
    from mnistlab.data import create_datamodule
    from mnistlab.models import model_task
    from mnistlab.tasks import task_class
    from mnistlab.training.callbacks import RunStats
    from mnistlab.training.checkpoint_io import AtomicCheckpointIO
    from mnistlab.training.slurm import cluster_plugins

    datamodule = create_datamodule(to_plain(cfg.data))
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = to_plain(cfg.model)
    module = task_class(model)(
        model=model,
        optim=to_plain(cfg.optim),
        scheduler=to_plain(cfg.scheduler),
        input_shape=list(datamodule.input_shape),
        num_classes=datamodule.num_classes,
        mean=datamodule.mean,
        std=datamodule.std,
        classes=list(datamodule.classes),
        channels_last=bool(cfg.speed.channels_last),
        compile=bool(cfg.speed.compile),
        # smoothing is a classification loss's; the detector's losses are its own (recorded as 0)
        label_smoothing=cfg.loss.label_smoothing if model_task(model["name"]) == "classification" else 0.0,
    )
    if cfg.ckpt_path and not cfg.resume:
        load_weights(module, str(cfg.ckpt_path))
    loggers = build_all(cfg.logger)
    callbacks = build_callbacks(cfg, progress)
    # Lightning's summary table lists every metric object and a FLOPs column; ours is one line
    trainer = build(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO(), *cluster_plugins()],
        enable_model_summary=False,
    )
    if cfg.trainer.get("enable_model_summary", True):
        from mnistlab.training.console import model_summary

        log.info(model_summary(str(model["name"]), module.net))
    run_stats = next(c for c in callbacks if isinstance(c, RunStats))
    return Run(cfg, Path(cfg.paths.output_dir), datamodule, module, trainer, loggers, run_stats)


def load_weights(module: Any, ckpt_path: str) -> None:
    """Fine-tuning: the network's weights from a checkpoint; optimizer, schedule, epoch counter, best score and
    the normalization statistics stay those of the new run."""
    from mnistlab.tasks.checkpoint import read_checkpoint

    state = read_checkpoint(ckpt_path)["state_dict"]
    module.net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    log.info("fine-tuning from the weights of %s (fresh optimizer, schedule and epoch counter)", ckpt_path)


def fit(run: Run, record: dict[str, Any]) -> str | None:
    """LR finder (when asked), HParams, fit; records what fit reached; returns the best checkpoint's path."""
    from hydra.core.hydra_config import HydraConfig
    from lightning.pytorch.callbacks import ModelCheckpoint

    from mnistlab.training.devices import device_record
    from mnistlab.training.hparams import log_hparams, single_run_columns, sweep_hparams

    cfg, module, trainer = run.cfg, run.module, run.trainer
    if cfg.tune.lr_find:
        from mnistlab.training.lr_finder import find_lr

        out_dir = run.out_dir if trainer.is_global_zero else None
        record.update(find_lr(trainer, module, run.datamodule, cfg.tune, out_dir))  # logs what it applied
    hydra = HydraConfig.get()
    extra, chosen = _hparam_keys(hydra)
    record[HPARAMS] = sweep_hparams(cfg, hydra.runtime.choices, module.lr, extra)
    if not cfg.resume:  # a resumed run keeps its first HParams session: one row per run
        columns = None if chosen is None else single_run_columns(record[HPARAMS], chosen)
        log_hparams(run.loggers, record[HPARAMS], columns)
    restore = str(cfg.ckpt_path) if cfg.resume and cfg.ckpt_path else None  # a fine-tune: weights alone (build_run)
    trainer.fit(module, datamodule=run.datamodule, ckpt_path=restore, weights_only=True)
    record[VAL_CURVE] = list(module.val_history)  # before testing loads the best checkpoint's history
    if module.val_history:
        record[BEST_EPOCH] = module.val_history.index(max(module.val_history)) + 1
    # trainer.callbacks is set by Lightning's callback connector, unseen by the checker
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)  # type: ignore[attr-defined]
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    best_score = checkpoint.best_model_score if checkpoint is not None else None
    if best_score is None:
        best_score = trainer.callback_metrics.get(RANK_BY)
    record[RANK_BY] = float(best_score) if best_score is not None else None
    record.update(run.run_stats.summary(trainer.strategy.root_device))  # the module is back on the host by now
    # a resume with no epoch left to train (stopped while testing) counts the epochs its checkpoint finished
    record[EPOCHS] = max(int(record.get(EPOCHS) or 0), int(trainer.current_epoch))
    record.update(device_record(trainer.strategy.root_device))
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        record.update(getattr(callback, "results", {}))  # sanity checks
    record.update(
        params=sum(p.numel() for p in module.net.parameters()),
        lr=module.lr,
        best_checkpoint=_relative(best, run.out_dir),
    )
    return best


def _hparam_keys(hydra: Any) -> tuple[list[str], list[str] | None]:
    """In a sweep: the swept keys without a column of their own (and no single-run columns); in a single run:
    no extra keys, and the columns its command line set."""
    from hydra.types import RunMode

    from mnistlab.core.factors import NOT_FACTORS, hparam_name, read_swept
    from mnistlab.training.hparams import BASE_TYPES

    if hydra.mode == RunMode.MULTIRUN:
        swept = read_swept(Path(hydra.sweep.dir)) or {}
        return [hparam_name(k) for k in swept if hparam_name(k) not in BASE_TYPES], None
    keys = [o.partition("=")[0].lstrip("+~") for o in hydra.overrides.task]
    return [], [hparam_name(k) for k in keys if not k.startswith(NOT_FACTORS)]


def job_threads(cfg: DictConfig, hydra: Any) -> int | None:
    """``speed.threads``, or with a joblib launcher the cores divided among the jobs it runs at once (None:
    leave torch its default, all cores)."""
    from mnistlab.training.sweep import is_joblib
    from mnistlab.training.threads import usable_cores

    if cfg.speed.get("threads"):
        return int(cfg.speed.threads)
    launcher = hydra.get("launcher") or {}
    if not is_joblib(launcher):
        return None
    cores = usable_cores()
    jobs = int(launcher.get("n_jobs") or -1)
    jobs = cores if jobs < 0 else jobs  # joblib's -1: one job per core
    return max(1, cores // max(1, jobs))


def follows_load(cfg: DictConfig) -> bool:
    """Nobody fixed the thread count (``speed.threads``, a joblib launcher's share, ``OMP_NUM_THREADS``): it
    follows the load of other processes (``mnistlab.training.threads``)."""
    from hydra.core.hydra_config import HydraConfig

    from mnistlab.training.threads import user_chose_threads

    hydra: Any = HydraConfig.get() if HydraConfig.initialized() else {}
    return job_threads(cfg, hydra) is None and not user_chose_threads()


def _set_threads(cfg: DictConfig) -> None:
    import torch
    from hydra.core.hydra_config import HydraConfig

    threads = job_threads(cfg, HydraConfig.get())
    if threads:
        torch.set_num_threads(threads)
    elif follows_load(cfg):
        from mnistlab.training.threads import load_aware

        load_aware().update()


def _first_job_of_process() -> bool:
    """A single run, or the first job a sweep process runs: the config tree is printed once, not per job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get()
    global _tree_printed
    first = hydra.mode != RunMode.MULTIRUN or not _tree_printed
    _tree_printed = True
    return first and is_rank_zero()


_tree_printed = False


def _relative(path: str | None, folder: Path) -> str | None:
    """``path`` relative to the run dir when it lies inside, else as it is."""
    if not path:
        return None
    return (
        str(Path(path).resolve().relative_to(folder.resolve()))
        if Path(path).resolve().is_relative_to(folder.resolve())
        else path
    )


def test(run: Run, best: str | None, record: dict[str, Any]) -> None:
    """Test the best checkpoint; write the run report on rank 0."""
    from mnistlab.analysis.figures import tensorboard_writers
    from mnistlab.training.retest import write_test_report

    start = time.perf_counter()
    (metrics,) = run.trainer.test(run.module, datamodule=run.datamodule, ckpt_path=best, weights_only=True)
    record.update({k: float(v) for k, v in metrics.items()})
    record["test_time_s"] = round(time.perf_counter() - start, 3)
    if run.trainer.is_global_zero:
        writers = tensorboard_writers(run.loggers, step=run.trainer.global_step)
        record.update(write_test_report(run.out_dir, run.module, run.datamodule, record, writers))
        for writer in writers:  # Lightning closed its loggers after fit: these writers were reopened, flush them
            writer.flush()


def train(cfg: DictConfig, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, test and record one run in ``paths.output_dir``; returns what metrics.json holds.

    ``record`` collects the results as they come, so that a failure can still report what was reached.
    """
    from mnistlab.training import slurm

    record = {} if record is None else record
    out_dir = Path(cfg.paths.output_dir)
    previous = read_record(out_dir)
    record.update(slurm.job_record())  # under SLURM: its job id, node and requeues
    slurm.continue_requeued(cfg, out_dir, previous, record)  # a job SLURM requeued continues from last.ckpt
    if not cfg.resume and not (previous and previous.get(STATUS) == Status.COMPLETED):
        settle_run_config(out_dir, started=True)  # a new run's record names what it ran, even if refused below
    validate(cfg)
    from mnistlab.training.multinode import check_world

    check_world(cfg.trainer)  # under torchrun: the trainer's devices and nodes are the processes it started
    if cfg.skip_completed and previous and previous.get(STATUS) == Status.COMPLETED:
        log.info("skipping %s: it completed before (skip_completed=true)", out_dir)
        return previous
    from mnistlab.tasks import check_names

    check_names(to_plain(cfg.model), to_plain(cfg.optim), to_plain(cfg.scheduler))  # before any data is read
    if cfg.resume:
        check_resume(cfg, out_dir)
    elif cfg.ckpt_path:
        from mnistlab.tasks.checkpoint import check_same_architecture

        check_same_architecture(str(cfg.ckpt_path), to_plain(cfg.model))

    import lightning as L

    from mnistlab.training.console import print_config_tree, quiet_console

    quiet_console()
    _set_threads(cfg)
    if _first_job_of_process():
        print_config_tree(cfg)
    started = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if is_rank_zero():
        record_provenance(out_dir, resumed=bool(cfg.resume))
    run = build_run(cfg, record)
    if is_rank_zero():
        record_data(out_dir, run.datamodule)
        if cfg.get("rerun"):
            report_rerun(Path(str(cfg.rerun)), out_dir)
    settle_run_config(out_dir, started=True)
    record[STATUS] = Status.RUNNING
    best = fit(run, record)
    if cfg.test:
        test(run, best, record)
    wall_time_s = round(time.perf_counter() - started, 3)
    record.update({STATUS: Status.COMPLETED, WALL_TIME_S: wall_time_s, FINISHED_AT: time.time()})
    if run.trainer.is_global_zero:
        write_record(out_dir, record)
    test_acc = record.get(TEST_ACC)
    log.info(
        "%s=%s %s=%s in %s epochs (%.1f s); results in %s",
        RANK_BY,
        f"{record[RANK_BY]:.4f}" if record[RANK_BY] is not None else "—",
        TEST_ACC,
        f"{test_acc:.4f}" if test_acc is not None else "—",
        record[EPOCHS],
        record[TRAIN_TIME_S],
        out_dir,
    )
    return record


def record_provenance(out_dir: Path, resumed: bool) -> None:
    """The code, packages, machine and command line of this run, before anything can fail; a resume keeps the
    record of the run's start and adds its own to ``resumes``."""
    import sys

    from mnistlab.core import provenance

    try:
        earlier = provenance.read(out_dir) if resumed else None
        if earlier is None:
            provenance.write(out_dir, sys.argv)
            return
        record, _, _ = provenance.collect(sys.argv)
        earlier.setdefault("resumes", []).append(
            {k: record[k] for k in ("mnistlab", "command", "machine", "git") if k in record}
        )
        write_json_atomic(out_dir / provenance.PROVENANCE_FILE, earlier)
    except OSError as err:  # provenance must never cost a run
        log.warning("provenance not recorded: %s", first_line(err))


def record_data(out_dir: Path, datamodule: Any) -> None:
    """Add the data's fingerprint (a hash of the decoded dataset, cached per set of files) to the provenance."""
    from mnistlab.core import provenance

    record = provenance.read(out_dir)
    if record is None:
        return
    try:
        record["data"] = {"dataset": type(datamodule).__name__, "fingerprint": datamodule.fingerprint()}
    except (NotImplementedError, OSError, ValueError) as err:
        record["data"] = {"dataset": type(datamodule).__name__, "fingerprint": None, "why": first_line(err)}
    if getattr(datamodule, "skipped", None):  # data.skip_bad=true: the images left out, each with why
        record["data"]["skipped"] = list(datamodule.skipped)
    try:
        write_json_atomic(out_dir / provenance.PROVENANCE_FILE, record)
    except OSError as err:
        log.warning("data fingerprint not recorded: %s", first_line(err))


def report_rerun(recorded_dir: Path, out_dir: Path) -> None:
    """Before training again what ``recorded_dir`` trained: which parts of its provenance differ from now."""
    from mnistlab.core import provenance
    from mnistlab.core.rerun import provenance_changes

    then, now = provenance.read(recorded_dir), provenance.read(out_dir) or {}
    patches = [d / provenance.PATCH_FILE for d in (recorded_dir, out_dir)]
    same_patch = all(p.is_file() for p in patches) and patches[0].read_bytes() == patches[1].read_bytes()
    packages = provenance.read_packages(recorded_dir), provenance.read_packages(out_dir)
    changes = provenance_changes(then, now, *packages, same_patch=same_patch)
    data_then, data_now = (
        ((then or {}).get("data") or {}).get("fingerprint"),
        (now.get("data") or {}).get("fingerprint"),
    )
    if then is not None and data_then != data_now:
        changes.append(f"other data: recorded fingerprint {data_then}, now {data_now}")
    if not changes:
        log.info("rerun of %s: same code, packages, machine and data as recorded", recorded_dir)
    for line in changes:
        log.warning("rerun of %s: %s", recorded_dir, line)


def check_resume(cfg: DictConfig, out_dir: Path) -> None:
    """``resume`` comes from ``resume=<run dir>`` on the command line (which also sets the run dir and its
    last.ckpt); the run's architecture, optimizer and scheduler stay what they were."""
    from mnistlab.core.errors import ConfigError
    from mnistlab.tasks.checkpoint import check_same_architecture, check_same_optimization

    run = Path(str(cfg.resume)).resolve()
    last = run / "checkpoints" / "last.ckpt"
    from_scratch = not cfg.ckpt_path and not last.exists()  # stopped before its first epoch ended
    if run != out_dir.resolve() or not (from_scratch or Path(str(cfg.ckpt_path or "")).resolve() == last):
        raise ConfigError("resume is set only as resume=<run dir> on the command line of mnistlab.train")
    if from_scratch:
        return
    saved = check_same_architecture(str(cfg.ckpt_path), to_plain(cfg.model))
    check_same_optimization(str(run), saved, to_plain(cfg.optim), to_plain(cfg.scheduler))


def run_job(cfg: DictConfig) -> float | None:
    """A run as a job of Hydra: returns ``val/acc_best`` for sweepers (Optuna maximizes it).

    The run dir is locked for the run (a second writer is refused at once; in a sweep with skip_completed=true
    a busy job is left to the process that runs it). In a sweep, a failed job (bad value, NaN loss, crash) is
    recorded in its metrics.json and the sweep goes on; the SweepSummary callback counts the failures at the
    end. A single run raises (one line for a user error, a traceback for a bug) after recording the failure.
    SIGTERM or Ctrl-C records ``interrupted`` and how far the run got, closes the sweep's books, and ends the
    process with 128 + the signal's number.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from mnistlab.core.errors import BusyError, Interrupted, TrialPruned, signals_interrupt
    from mnistlab.core.files import dir_lock
    from mnistlab.training import slurm
    from mnistlab.training.devices import job_device
    from mnistlab.training.multinode import publish_run_dir

    hydra = HydraConfig.get()
    in_sweep = hydra.mode == RunMode.MULTIRUN
    out_dir = Path(cfg.paths.output_dir)
    publish_run_dir(out_dir)  # under torchrun, rank 0's run dir is every rank's
    record: dict[str, Any] = {}
    try:
        with signals_interrupt(), slurm.preemption_signals(), _lock_unless_other_rank(out_dir, dir_lock):
            try:
                with job_device(cfg):  # in a joblib sweep on GPUs: this job's GPU, and a place on it
                    return train(cfg, record).get(RANK_BY)
            except TrialPruned as pruned:  # recorded while the dir is still held
                record_failure(cfg, record, pruned, status=Status.PRUNED)
                log.info("%s", pruned)
                if not in_sweep:
                    raise
                return None
            except slurm.Preempted as stop:  # requeued to continue (re-raised), or recorded why not
                slurm.requeue(cfg, record, stop, record_failure)
                return None
            except Interrupted as stop:
                record_failure(cfg, record, stop, status=Status.INTERRUPTED)
                raise
            except BusyError:
                raise
            except Exception as raised:
                err = user_error(raised)
                record_failure(cfg, record, err or raised)
                if not in_sweep:
                    raise
                if err is None:  # a bug or a crash: the traceback matters
                    log.exception("job failed; the sweep goes on")
                else:
                    log.error("%s", err)
                return None
    except BusyError as busy:
        if in_sweep and cfg.skip_completed:
            log.info("skipping %s: %s", out_dir, busy)
            return None
        raise
    except Interrupted:
        if in_sweep and not slurm.is_submitit(hydra.launcher):  # on SLURM the sweep's own process closes it
            from mnistlab.training.sweep import close_sweep

            close_sweep(Path(hydra.sweep.dir))
        raise
    finally:
        settle_run_config(out_dir, started=False)  # .hydra files not moved in by now are not this run's


def _lock_unless_other_rank(out_dir: Path, dir_lock: Any) -> Any:
    """Rank 0 holds the run dir; the other DDP ranks write nothing there of their own."""
    import contextlib

    return dir_lock(out_dir) if is_rank_zero() else contextlib.nullcontext()


def record_failure(cfg: DictConfig, record: dict[str, Any], err: BaseException, status: Status = Status.FAILED) -> None:
    """metrics.json says ``failed`` (or ``interrupted``), why, and what the run had reached (rank 0 only). A
    completed record is never replaced: a failed resume or fine-tune of a finished run keeps its results."""
    if not is_rank_zero():
        return
    out_dir = Path(cfg.paths.output_dir)
    previous = read_record(out_dir)
    started = STATUS in record  # set once the run is built and about to fit
    if previous and (previous.get(STATUS) == Status.COMPLETED or (cfg.resume and not started)):
        log.error("%s: %s; the run's metrics.json (%s) is kept", status, first_line(err), previous.get(STATUS))
        return
    reason = f"{type(err).__name__}: {first_line(err, 1000)}"
    if status == Status.INTERRUPTED:
        last = out_dir / "checkpoints" / "last.ckpt"
        reason = f"{err} after {record.get(EPOCHS, 0)} finished epochs"
        if not last.is_file():
            reason += f"; stopped before the first epoch ended: resume={out_dir} starts it again"
        record[RESUME_WITH] = f"resume={out_dir}"  # from last.ckpt, or from scratch with the same config
    write_record(out_dir, {**record, STATUS: status, REASON: reason, FINISHED_AT: time.time()})
