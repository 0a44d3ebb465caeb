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
    }
