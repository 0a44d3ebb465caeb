"""The model registry: ``model.name`` in configs and checkpoints → an ``nn.Module`` class of this folder.

``register_model("cnn")`` adds a class; ``task="detection"`` says which task trains it (classification by
default). ``create_model`` builds one from a config dict of plain values.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from mnistlab.core.errors import ConfigError
from mnistlab.core.omegaconf_compat import register_resolver
from mnistlab.core.registry import Registry

MODELS: Registry[type[nn.Module]] = Registry("model", "model.name")
TASK_NAMES = ("classification", "detection")


def register_model(name: str, task: str = "classification"):
    if task not in TASK_NAMES:
        raise ValueError(f"task={task!r} is not one of {', '.join(TASK_NAMES)}")
    return MODELS.register(name, task=task)


def model_task(name: Any) -> str:
    """``classification`` or ``detection``: which task trains the model ``name``."""
    return MODELS.meta(name)["task"]


def check_model_settings(model: dict[str, Any]) -> type[nn.Module]:
    """The registered class of ``model["name"]``, after checking that it takes every other key."""
    cls = MODELS.get(model.get("name"))
    accepted = set(inspect.signature(cls).parameters) - {"input_shape", "num_classes"}
    unknown = sorted(set(model) - accepted - {"name"})
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not a setting of model.name={model['name']!r}; remove it")
    return cls


def with_defaults(model: dict[str, Any]) -> dict[str, Any]:
    """``model`` with every setting its class takes, those it leaves out at the class's default, in the class's
    canonical form: a checkpoint saved before a setting existed, or one that spells a setting another way,
    describes the same architecture as a config that names its default."""
    try:
        cls = MODELS.get(model.get("name"))
    except ConfigError:
        return dict(model)
    defaults = {  # as a config holds them: lists, not tuples
        name: list(p.default) if isinstance(p.default, tuple) else p.default
        for name, p in inspect.signature(cls).parameters.items()
        if name not in ("input_shape", "num_classes") and p.default is not inspect.Parameter.empty
    }
    settings = {**defaults, **model}
    canonical = getattr(cls, "canonical_settings", None)  # e.g. one kernel size for all blocks → one per block
    return canonical(settings) if canonical else settings


def create_model(model: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The registered class of ``model["name"]`` with the other keys as its arguments."""
    kwargs = {k: v for k, v in model.items() if k != "name"}
    cls = check_model_settings(model)
    try:
        return cls(input_shape=tuple(input_shape), num_classes=int(num_classes), **kwargs)
    except TypeError as err:  # an argument the architecture does not take
        raise ConfigError(f"model.name={model['name']!r}: {err}") from None


def _task_or_default(name: str) -> str:
    return model_task(name) if name in MODELS else "classification"  # an unknown name is reported elsewhere


register_resolver("mnistlab_task", _task_or_default)  # data=mnist_detection follows the model: ${mnistlab_task:…}
