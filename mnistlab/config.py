"""Config plumbing shared by the entry points: resolvers, and validation before any data is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnistlab.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(ROOT / "conf")
PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine")

if not OmegaConf.has_resolver("mnistlab_root"):
    OmegaConf.register_new_resolver("mnistlab_root", lambda: str(ROOT))


def _number(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"{key}={value!r} must be a number")
    return value


def validate(cfg: DictConfig) -> None:
    """Fail in a second, with one line naming key, value and what is allowed, before data is loaded."""
    from mnistlab.models.layers import ACTIVATIONS, INITS, NORMS  # imports torch: not on the --help path

    model = cfg.get("model") or {}
    for key, allowed in (("norm", NORMS), ("activation", tuple(ACTIVATIONS)), ("init", INITS)):
        if key in model and model[key] not in allowed:
            raise ConfigError(f"model.{key}={model[key]!r} is not one of {', '.join(allowed)}")
    checks = [
        ("model.dropout", lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("optim.lr", lambda v: v > 0, "must be > 0"),
        ("optim.weight_decay", lambda v: v >= 0, "must be >= 0"),
        ("optim.momentum", lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("data.batch_size", lambda v: v > 0 and v == int(v), "must be a positive integer"),
        ("data.eval_batch_size", lambda v: v > 0 and v == int(v), "must be a positive integer"),
        ("data.val_size", lambda v: v > 0 and v == int(v), "must be a positive integer"),
        ("trainer.max_epochs", lambda v: v == -1 or v >= 1, "must be >= 1 (or -1 for no limit)"),
    ]
    for key, ok, allowed in checks:
        value = _number(cfg, key)
        if value is not None and not ok(value):
            raise ConfigError(f"{key}={value!r} {allowed}")
    precision = OmegaConf.select(cfg, "trainer.precision")
    if precision is not None and str(precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if cfg.get("ckpt_path") and not Path(str(cfg.ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist")


def to_plain(cfg: Any) -> Any:
    """Resolved plain containers: what checkpoints and metrics.json may hold."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
