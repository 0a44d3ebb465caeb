"""``python -m mnistlab.train``: compose → validate → seed → instantiate → LR finder → fit → test → metrics.json.

Heavy imports (torch, Lightning) happen inside ``train`` so that ``--help`` answers at once.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from mnistlab.config import CONFIG_DIR, check_group_choices, expand_resume, to_plain, validate
from mnistlab.errors import MnistlabError, exit_with

log = logging.getLogger("mnistlab.train")


def build_callbacks(cfg: DictConfig) -> list[Any]:
    """Every ``callbacks`` entry with a ``_target_`` (entries set to null are skipped)."""
    from hydra.utils import instantiate

    callbacks = [instantiate(c) for c in (cfg.callbacks or {}).values() if c and c.get("_target_")]
    if cfg.trainer.get("enable_progress_bar") is False:  # Lightning refuses a progress bar it was told not to use
        from lightning.pytorch.callbacks import ProgressBar

        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Any]:
    from hydra.utils import instantiate

    return [instantiate(c) for c in (cfg.logger or {}).values() if c and c.get("_target_")]


def train(cfg: DictConfig, record: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train, test and record one run in ``paths.output_dir``; returns what metrics.json holds.

    ``record`` collects the results as they come, so that a failure can still report what was reached.
    """
    record = {} if record is None else record
    validate(cfg)
    from mnistlab.results import METRICS_FILE, read_metrics, write_json_atomic

    out_dir = Path(cfg.paths.output_dir)
    previous = read_metrics(out_dir)
    if cfg.skip_completed and previous and previous.get("status") == "completed":
        log.info("skipping %s: it completed before (skip_completed=true)", out_dir)
        return previous
    if cfg.ckpt_path:
        check_checkpoint_matches(str(cfg.ckpt_path), cfg)  # before any data is read

    import lightning as L
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    from mnistlab.callbacks import EpochSeed, RunStats, StoreRunConfig
    from mnistlab.checkpoint_io import AtomicCheckpointIO
    from mnistlab.hparams import log_hparams, sweep_hparams
    from mnistlab.module import module_class

    # Lightning prints through its own handler as well as Hydra's: keep Hydra's (console + train.log)
    lightning_log = logging.getLogger("lightning.pytorch")
    lightning_log.handlers.clear()
    lightning_log.propagate = True

    started = time.perf_counter()
    metrics_path = out_dir / METRICS_FILE
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # the model needs the input shape, the classes and the train statistics
    model = module_class(to_plain(cfg.model))(
        model=to_plain(cfg.model),
        optim=to_plain(cfg.optim),
        scheduler=to_plain(cfg.scheduler),
        input_shape=list(datamodule.input_shape),
        num_classes=datamodule.num_classes,
        mean=datamodule.mean,
        std=datamodule.std,
        classes=list(datamodule.classes),
    )
    run_stats = RunStats()
    loggers = build_loggers(cfg)
    callbacks = [*build_callbacks(cfg), run_stats, StoreRunConfig(to_plain(cfg)), EpochSeed(cfg.seed)]
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    resuming_here = bool(cfg.ckpt_path) and Path(str(cfg.ckpt_path)).resolve().is_relative_to(out_dir.resolve())

    record["status"] = "running"
    if cfg.tune.lr_find:
        from mnistlab.tuning import find_lr

        record["lr_find/suggestion"] = find_lr(trainer, model, datamodule, cfg.tune, out_dir)
        log.info("LR finder suggests %s; training with lr=%s", record["lr_find/suggestion"], model.lr)
    hparams = record["hparams"] = sweep_hparams(cfg, HydraConfig.get().runtime.choices, model.lr)
    if not resuming_here:  # a resumed run keeps its first HParams session: one row per run
        log_hparams(loggers, hparams)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    record["val_curve"] = list(model.val_history)  # before testing loads the best checkpoint's history
    if model.val_history:
        record["best_epoch"] = model.val_history.index(max(model.val_history)) + 1
    checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    best_score = checkpoint.best_model_score if checkpoint is not None else None
    record["val/acc_best"] = float(best_score) if best_score is not None else _maybe(trainer, "val/acc_best")
    record.update(run_stats.summary(model.device))
    for callback in trainer.callbacks:
        record.update(getattr(callback, "results", {}))  # sanity checks
    record.update(
        params=sum(p.numel() for p in model.net.parameters()),
        lr=model.lr,
        best_checkpoint=str(Path(best).relative_to(out_dir)) if best else None,
    )
    if cfg.test:
        start = time.perf_counter()
        (test_metrics,) = trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
        record.update({k: float(v) for k, v in test_metrics.items()})
        record["test_time_s"] = round(time.perf_counter() - start, 3)
        if trainer.is_global_zero:
            from mnistlab.evaluation import write_evaluation

            labels = datamodule.class_labels("train"), datamodule.class_labels("test")
            record.update(write_evaluation(out_dir, model.test_results, model.report_classes, *labels, record, loggers))
    record["status"] = "completed"
    record["wall_time_s"] = round(time.perf_counter() - started, 3)
    record["finished_at"] = time.time()
    if trainer.is_global_zero:
        write_json_atomic(metrics_path, record)
    log.info(
        "val/acc_best=%.4f test/acc=%s in %s epochs (%.1f s); results in %s",
        record["val/acc_best"],
        f"{record.get('test/acc', float('nan')):.4f}",
        record["epochs"],
        record["train_time_s"],
        out_dir,
    )
    return record


def check_checkpoint_matches(ckpt_path: str, cfg: DictConfig) -> None:
    """A checkpoint that is corrupt, unsafe, or of another architecture fails here, in a second."""
    from mnistlab.errors import ConfigError
    from mnistlab.module import MODEL_RUNTIME_KEYS, read_checkpoint

    # the keys that shape the parameters; dropout, activation and init may change when fine-tuning
    ignored = (*MODEL_RUNTIME_KEYS, "dropout", "activation", "init")
    saved = read_checkpoint(ckpt_path)["hyper_parameters"].get("model", {})
    wanted = {k: v for k, v in to_plain(cfg.model).items() if k not in ignored}
    saved = {k: v for k, v in saved.items() if k not in ignored}
    if saved != wanted:
        diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        shown = ", ".join(f"model.{k}={saved.get(k)!r} (not {wanted.get(k)!r})" for k in diff[:3])
        raise ConfigError(f"ckpt_path={ckpt_path} holds another architecture: {shown}; train with the same model")


def _maybe(trainer: Any, key: str) -> float | None:
    value = trainer.callback_metrics.get(key)
    return float(value) if value is not None else None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``val/acc_best`` for sweepers (Optuna maximizes it).

    In a sweep, a failed job (bad value, NaN loss, crash) is recorded in its metrics.json and the sweep goes
    on; the SweepSummary callback counts the failures at the end. A single run exits non-zero.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    record: dict[str, Any] = {}
    try:
        return train(cfg, record).get("val/acc_best")
    except Exception as raised:
        err = user_error(raised)
        record_failure(cfg, record, err or raised)
        if err is None:  # a bug or a crash: the traceback matters
            if not in_sweep:
                raise
            log.exception("job failed; the sweep goes on")
            return None
        log.error("%s", err)
        if in_sweep:
            return None
        exit_with(err)


def user_error(err: BaseException) -> MnistlabError | None:
    """The user-fixable error behind ``err`` (Hydra's instantiate wraps what constructors raise)."""
    seen = err
    while seen is not None:
        if isinstance(seen, MnistlabError):
            return seen
        seen = seen.__cause__
    return None


def record_failure(cfg: DictConfig, record: dict[str, Any], err: BaseException) -> None:
    """metrics.json says ``failed``, why, and what the run had reached (rank 0 only)."""
    from mnistlab.results import METRICS_FILE, write_json_atomic

    # the variables Lightning reads for the global rank (not imported: a typo must fail in half a second)
    rank = next((os.environ[k] for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID") if k in os.environ), "0")
    if int(rank) == 0:
        reason = f"{type(err).__name__}: {err}".splitlines()[0]
        failed = {**record, "status": "failed", "reason": reason, "finished_at": time.time()}
        write_json_atomic(Path(cfg.paths.output_dir) / METRICS_FILE, failed)


if __name__ == "__main__":
    sys.argv = expand_resume(sys.argv)
    check_group_choices(sys.argv[1:])
    main()
