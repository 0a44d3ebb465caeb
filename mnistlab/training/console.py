"""What a run prints: the composed config once as a tree, and a one-line model summary (parameters per layer
group). Each event once, without advertisements or third-party deprecation noise: ``mnistlab.core.quiet``, for
every command."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnistlab.core.quiet import quiet_console

__all__ = ["model_summary", "print_config_tree", "quiet_console"]  # quiet_console: every command's, kept here too

log = logging.getLogger("mnistlab.train")


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
        text = OmegaConf.to_yaml({key: value}) if isinstance(value, dict | list) else f"{key!s}: {value}"
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
