"""What a run prints: each event once, no advertisements or third-party deprecation noise, the composed config
once as a tree, and a one-line model summary (parameters per layer group)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("mnistlab.train")

# messages of other libraries that say nothing about the run
NOISE = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own use of torch's pytree
    r"The number of training batches \(\d+\) is smaller than the logging interval",  # tiny data: epoch logs only
)


class _DropTips(logging.Filter):
    """Lightning's "💡 Tip: … try installing litlogger/litmodels" lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


def quiet_console() -> None:
    """Lightning logs through Hydra's handlers only (console + train.log; its own handler printed every line a
    second time), without its tips; known warnings of other libraries are silenced. Idempotent."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())
    for message in NOISE:
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)  # "Using categorical units…" notices


def print_config_tree(cfg: DictConfig) -> None:
    """The composed config as a tree, one branch per top-level section (rich when installed, else YAML)."""
    body = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in cfg.items()}
    try:
        from rich.console import Console
        from rich.syntax import Syntax
        from rich.tree import Tree
    except ImportError:
        print(OmegaConf.to_yaml(body), flush=True)
        return
    tree = Tree("config", guide_style="dim")
    for key, value in body.items():
        text = OmegaConf.to_yaml({key: value}) if isinstance(value, dict | list) else f"{key}: {value}"
        tree.add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    Console(soft_wrap=True).print(tree)


def _count(n: int) -> str:
    for unit, size in (("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return str(n)


def model_summary(name: str, net: Any) -> str:
    """One line: the model's parameters in all and per top-level layer group."""
    groups = [(child, sum(p.numel() for p in module.parameters())) for child, module in net.named_children()]
    total = sum(p.numel() for p in net.parameters())
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    parts = ", ".join(f"{child} {_count(n)}" for child, n in groups if n)
    frozen = f", {_count(total - trainable)} frozen" if trainable < total else ""
    return f"model {name} ({type(net).__name__}): {_count(total)} parameters{frozen}" + (f" ({parts})" if parts else "")
