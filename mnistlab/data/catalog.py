"""Every dataset of mnistlab, registered, and ``create_datamodule`` to build one from a config of plain values."""

from __future__ import annotations

import inspect
from typing import Any

from mnistlab.core.errors import ConfigError
from mnistlab.data import cifar, detection, folder, hf, mnist  # noqa: F401  (each registers its datasets)
from mnistlab.data.registry import DATASETS


def _settings(cls: type) -> set[str]:
    """The keyword arguments a DataModule takes, its base classes' included (followed through ``**kwargs``)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names |= {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            break
    return names


def create_datamodule(data: dict[str, Any]) -> Any:
    """The registered DataModule of ``data["dataset"]`` with the other keys as its arguments."""
    name = data.get("dataset")
    cls = DATASETS.get(name)
    kwargs = {k: v for k, v in data.items() if k != "dataset"}
    unknown = sorted(set(kwargs) - _settings(cls))
    if unknown:
        raise ConfigError(f"data.{unknown[0]} is not a setting of data.dataset={name!r}; remove it")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"data.dataset={name!r}: {err}") from None
