"""OmegaConf 2.3 and 2.4 alike: 2.4 (which Hydra 1.4 needs) renames ``register_new_resolver`` to
``register_resolver`` and warns on the old name, while 2.3's ``register_resolver`` is an older API that passes
every argument as a string. Imports no Hydra: the model registry registers a resolver too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import omegaconf
from omegaconf import OmegaConf

OMEGACONF_2_4 = tuple(int(part) for part in omegaconf.__version__.split(".")[:2]) >= (2, 4)


def register_resolver(name: str, resolver: Callable[..., Any]) -> None:
    """``${name:…}`` resolves through ``resolver`` (once per process: a name already registered is kept)."""
    if OmegaConf.has_resolver(name):
        return
    if OMEGACONF_2_4:
        OmegaConf.register_resolver(name, resolver)
    else:
        OmegaConf.register_new_resolver(name, resolver)
