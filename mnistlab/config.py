"""Config plumbing shared by the entry points: resolvers, and validation before any data is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnistlab.errors import ConfigError, exit_with

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(ROOT / "conf")
# the ablation knobs' allowed values, here without torch so that a typo fails in half a second;
# mnistlab.models.layers maps them to modules (a test keeps the two in step)
NORMS = ("none", "batch")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "selu", "leaky_relu", "elu")
INITS = ("default", "kaiming", "xavier", "zeros")
PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine")

if not OmegaConf.has_resolver("mnistlab_root"):
    OmegaConf.register_new_resolver("mnistlab_root", lambda: str(ROOT))


def model_task(target: str) -> str:
    """``detection`` for architectures that say so (class attribute ``task = "detection"``), else
    ``classification``: what picks the LightningModule and the detection data's ``task``."""
    from hydra.utils import get_class

    try:
        net_class = get_class(target)
    except Exception as err:
        raise ConfigError(f"model._target_={target!r} cannot be imported ({err})") from None
    return getattr(net_class, "task", "classification")


def _task_or_default(target: str) -> str:
    try:
        return model_task(target)
    except ConfigError:
        return "classification"  # the resolver stays quiet: a wrong _target_ is reported where the model is built


if not OmegaConf.has_resolver("mnistlab_task"):
    OmegaConf.register_new_resolver("mnistlab_task", _task_or_default)


def _number(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"{key}={value!r} must be a number")
    return value


def validate(cfg: DictConfig) -> None:
    """Fail in a second, with one line naming key, value and what is allowed, before data is loaded."""
    model = cfg.get("model") or {}
    for key, allowed in (("norm", NORMS), ("activation", ACTIVATIONS), ("init", INITS)):
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
        ("data.test_size", lambda v: v > 0 and v == int(v), "must be a positive integer"),
        ("trainer.max_epochs", lambda v: v == -1 or v >= 1, "must be >= 1 (or -1 for no limit)"),
    ]
    for key, ok, allowed in checks:
        value = _number(cfg, key)
        if value is not None and not ok(value):
            raise ConfigError(f"{key}={value!r} {allowed}")
    interval = OmegaConf.select(cfg, "scheduler.interval")
    if interval is not None and interval not in ("step", "epoch"):
        raise ConfigError(f"scheduler.interval={interval!r} must be 'step' or 'epoch'")
    precision = OmegaConf.select(cfg, "trainer.precision")
    if precision is not None and str(precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if cfg.get("ckpt_path") and not Path(str(cfg.ckpt_path)).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist")


def to_plain(cfg: Any) -> Any:
    """Resolved plain containers: what checkpoints and metrics.json may hold."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def _fail(message: str) -> None:
    exit_with(message)


def check_group_choices(argv: list[str]) -> None:
    """``model=foo`` where conf/model/foo.yaml does not exist: one line listing the options, before Hydra
    (whose own message spans a screen)."""
    conf = Path(CONFIG_DIR)
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        if not sep or "." in group or "/" in group or not (conf / group).is_dir() or "," in value or not value:
            continue
        if value != "null" and not (conf / group / f"{value}.yaml").is_file():
            options = sorted(p.stem for p in (conf / group).glob("*.yaml"))
            _fail(f"{group}={value!r} is not a preset; choose one of {', '.join(options)}")


def expand_resume(argv: list[str]) -> list[str]:
    """``resume=<run dir>`` → the run's own overrides, then the new ones, in the same run dir, from its
    ``checkpoints/last.ckpt``. Hydra then composes the same config again (later overrides win) and writes
    the combined overrides back, so a run can be resumed any number of times."""
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    run_dir = Path(resume[-1].partition("=")[2]).expanduser()
    overrides_file, last = run_dir / ".hydra" / "overrides.yaml", run_dir / "checkpoints" / "last.ckpt"
    if not overrides_file.is_file():
        _fail(f"resume={run_dir} is not a run dir (no .hydra/overrides.yaml)")
    if not last.is_file():
        _fail(f"resume={run_dir} has no checkpoints/last.ckpt to resume from (the run ended before its first epoch)")
    dropped = ("resume=", "ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir=", "hydra.job.", "++ckpt_path=")
    saved = [o for o in OmegaConf.load(overrides_file) if not str(o).startswith(dropped)]
    new = [a for a in argv[1:] if not a.startswith("resume=")]
    return [argv[0], *saved, *new, f"ckpt_path={last.resolve()}", f"hydra.run.dir={run_dir.resolve()}"]
