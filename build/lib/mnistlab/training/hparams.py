"""The few choices a sweep varies, logged as TensorBoard HParams and kept in metrics.json.

Every run logs the same keys with scalar values (no None, lists or ``_target_``): TensorBoard drops runs
whose key sets differ from the HParams tab.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

# the metric tags the HParams tab shows; logged with placeholder 0 up front, then for real
HPARAM_METRICS = ("val/acc_best", "test/acc", "test/f1", "test/loss")


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int | float | str):
        return value
    if value is None:
        return "none"
    return str(list(value)) if OmegaConf.is_list(value) or isinstance(value, list | tuple) else str(value)


def sweep_hparams(cfg: DictConfig, choices: dict[str, Any], lr: float) -> dict[str, str | int | float | bool]:
    """The HParams row of a run. ``choices`` are Hydra's picked group options; ``lr`` is the one applied
    (after the LR finder, if it ran)."""
    model, data, optim = cfg.model, cfg.data, cfg.optim
    return {
        "data": _scalar(data.get("dataset", choices.get("data"))),
        "model": _scalar(choices.get("model")),
        "norm": _scalar(model.get("norm")),
        "dropout": _scalar(float(model.get("dropout", 0.0))),
        "activation": _scalar(model.get("activation")),
        "init": _scalar(model.get("init")),
        "optim": _scalar(choices.get("optim")),
        "lr": float(lr),
        "weight_decay": float(optim.get("weight_decay", 0.0) or 0.0),
        "scheduler": _scalar(choices.get("scheduler")),
        "batch_size": int(data.batch_size),
        "precision": _scalar(str(cfg.trainer.get("precision", "32-true"))),
        "seed": int(cfg.seed),
        "fold": int(data.get("fold", 0)) if data.get("num_folds") else -1,
        "permute_pixels": bool(data.get("permute_pixels", False)),
    }


def log_hparams(loggers: list[Any], hparams: dict[str, Any]) -> None:
    """One HParams session per run, declaring HPARAM_METRICS as its metric columns.

    Lightning's ``log_hyperparams(params, metrics)`` also writes the metrics as scalars at step 0; those
    placeholders can outlive the real values when a run has several event files (test opens a new one).
    Here only the session is written; the real metrics arrive under the same tags.
    """
    from lightning.pytorch.loggers import TensorBoardLogger
    from lightning.pytorch.utilities import rank_zero_only
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    if rank_zero_only.rank != 0:  # other ranks hold no writer
        return
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment._get_file_writer()
            for summary in hparams_summary(hparams, dict.fromkeys(HPARAM_METRICS, 0.0)):
                writer.add_summary(summary)
            writer.flush()
        else:
            logger.log_hyperparams(hparams)
