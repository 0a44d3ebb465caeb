"""``python -m mnistlab.train``: compose → validate → seed → instantiate → LR finder → fit → test → metrics.json.

Heavy imports (torch, Lightning) happen inside ``train`` so that ``--help`` answers at once.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from mnistlab.config import CONFIG_DIR, to_plain, validate
from mnistlab.errors import MnistlabError

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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, test and record one run in ``paths.output_dir``; returns what metrics.json holds."""
    validate(cfg)
    import lightning as L
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import ModelCheckpoint

    from mnistlab.callbacks import RunStats, StoreRunConfig
    from mnistlab.hparams import HPARAM_METRICS, sweep_hparams
    from mnistlab.module import ImageClassifier
    from mnistlab.results import METRICS_FILE, write_json_atomic

    # Lightning prints through its own handler as well as Hydra's: keep Hydra's (console + train.log)
    lightning_log = logging.getLogger("lightning.pytorch")
    lightning_log.handlers.clear()
    lightning_log.propagate = True

    started = time.perf_counter()
    out_dir = Path(cfg.paths.output_dir)
    metrics_path = out_dir / METRICS_FILE
    L.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # the model needs the input shape, the classes and the train statistics
    model = ImageClassifier(
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
    callbacks = [*build_callbacks(cfg), run_stats, StoreRunConfig(to_plain(cfg))]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    record: dict[str, Any] = {"status": "running"}
    try:
        if cfg.tune.lr_find:
            from mnistlab.tuning import find_lr

            record["lr_find/suggestion"] = find_lr(trainer, model, datamodule, cfg.tune, out_dir)
            log.info("LR finder suggests %s; training with lr=%s", record["lr_find/suggestion"], model.lr)
        hparams = sweep_hparams(cfg, HydraConfig.get().runtime.choices, model.lr)
        for logger in loggers:
            logger.log_hyperparams(hparams, dict.fromkeys(HPARAM_METRICS, 0.0))

        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        checkpoint = next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)
        best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
        best_score = checkpoint.best_model_score if checkpoint is not None else None
        record["val/acc_best"] = float(best_score) if best_score is not None else _maybe(trainer, "val/acc_best")
        if cfg.test:
            start = time.perf_counter()
            (test_metrics,) = trainer.test(model, datamodule=datamodule, ckpt_path=best, weights_only=True)
            record.update({k: float(v) for k, v in test_metrics.items()})
            record["test_time_s"] = round(time.perf_counter() - start, 3)
        record.update(run_stats.summary(model.device))
        record.update(
            params=sum(p.numel() for p in model.net.parameters()),
            lr=model.lr,
            best_checkpoint=str(Path(best).relative_to(out_dir)) if best else None,
            hparams=hparams,
            status="completed",
        )
        record["wall_time_s"] = round(time.perf_counter() - started, 3)
    except BaseException as err:
        record.update(status="failed", reason=f"{type(err).__name__}: {err}")
        raise
    finally:
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


def _maybe(trainer: Any, key: str) -> float | None:
    value = trainer.callback_metrics.get(key)
    return float(value) if value is not None else None


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``val/acc_best`` for sweepers (Optuna maximizes it)."""
    try:
        return train(cfg).get("val/acc_best")
    except MnistlabError as err:
        log.error("%s", err)
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return None  # recorded in the job's metrics.json; the sweep goes on
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
