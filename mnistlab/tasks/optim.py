"""Optimizers and schedulers by name, from an allow-list: the classes of ``torch.optim`` and
``torch.optim.lr_scheduler`` under their lower-case names (``sgd``, ``adamw``, ``steplr``…) and a few short
aliases (``onecycle``, ``cosine``, ``step``). A config or checkpoint names one; nothing else can be built.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.optim import Optimizer, lr_scheduler

from mnistlab.core.errors import ConfigError
from mnistlab.core.fields import check
from mnistlab.core.registry import Registry

OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer", "optim.name")
SCHEDULERS: Registry[type] = Registry("scheduler", "scheduler.name")
SCHEDULER_ALIASES = {"onecycle": "onecyclelr", "cosine": "cosineannealinglr", "step": "steplr"}


def _classes(module: Any, base: type) -> dict[str, type]:
    return {
        name.lower(): obj
        for name, obj in vars(module).items()
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base and not name.startswith("_")
    }


for _name, _cls in _classes(torch.optim, Optimizer).items():
    OPTIMIZERS.add(_name, _cls)
_SCHEDULER_CLASSES = _classes(lr_scheduler, lr_scheduler.LRScheduler)
for _name, _cls in _SCHEDULER_CLASSES.items():
    SCHEDULERS.add(_name, _cls)
for _alias, _name in SCHEDULER_ALIASES.items():
    SCHEDULERS.add(_alias, _SCHEDULER_CLASSES[_name])


def is_none(name: Any) -> bool:
    """``scheduler.name`` none (or unset): a constant learning rate."""
    return name in (None, "none")


def _fused_available(optim_cls: type, params: list[torch.nn.Parameter]) -> bool:
    return "fused" in inspect.signature(optim_cls).parameters and all(
        p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params
    )


def build_optimizer(
    params: list[torch.nn.Parameter], optim: dict[str, Any], lr: float, allow_fused: bool = True
) -> Optimizer:
    """The optimizer named by ``optim["name"]`` with ``lr`` (the LR finder may have changed it) and the
    other keys as its arguments; fused kernels where the class has them and ``allow_fused``."""
    cls = OPTIMIZERS.get(optim.get("name"))
    kwargs = {k: v for k, v in optim.items() if k not in ("name", "lr")}
    fused_free = kwargs.get("fused") is None and kwargs.get("foreach") is None
    if allow_fused and fused_free and _fused_available(cls, params):
        kwargs["fused"] = True  # one fused kernel per step instead of ~8 ops per parameter: 0.3 ms a step saved
    return cls(params, lr=lr, **kwargs)  # type: ignore[call-arg]  # every registered subclass takes lr


def continue_schedule(scheduler: Any, reached: int) -> Any:
    """A freshly built ``scheduler`` moved to step ``reached`` of its (new) schedule: the learning rate of that
    step by the closed form (``_step_count`` 1), and on as usual from there."""
    scheduler.last_epoch, scheduler._step_count = reached - 1, 0
    scheduler.step()
    return scheduler


def build_scheduler(optimizer: Optimizer, scheduler: dict[str, Any] | None, lr: float, total: Any) -> dict | None:
    """Lightning's scheduler dict, or None for ``name: none``. Arguments that depend on the run are filled in
    when the config leaves them out: ``max_lr`` (OneCycle) from ``lr``; ``total_steps`` and ``T_max`` from
    ``total(interval)``, the trainer's steps or epochs."""
    settings = dict(scheduler or {})
    name = settings.pop("name", "none")
    if is_none(name):
        return None
    cls = SCHEDULERS.get(name)
    interval = check("scheduler.interval", settings.pop("interval", "epoch"))
    accepted = inspect.signature(cls).parameters
    for key in ("max_lr", "total_steps", "T_max"):
        if key in accepted and settings.get(key) is None:
            settings[key] = lr if key == "max_lr" else total(interval)
            if key != "max_lr" and not 0 < settings[key] < float("inf"):
                raise ConfigError(
                    f"scheduler.name={name!r} takes its length from the run: set trainer.max_epochs >= 1 "
                    f"(or scheduler.{key})"
                )
    steps, warmup = settings.get("total_steps"), settings.get("pct_start")
    if steps and warmup and float(steps) * float(warmup) == 1:  # OneCycleLR divides by zero (4 × 0.25)
        settings["pct_start"] = 2 / float(steps)
    return {"scheduler": cls(optimizer, **settings), "interval": interval}
