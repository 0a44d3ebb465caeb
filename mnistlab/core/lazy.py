"""Package faces that import their modules on first use, so that importing a package stays cheap."""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib import import_module
from types import ModuleType
from typing import Any


def lazy_exports(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that finds ``name`` in ``package.<where[name]>`` (a fixed table of our modules)."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{where[name]}"), name)

    return __getattr__


class _CommandModule(ModuleType):
    """A command module that is also its Python function: ``from mnistlab import train; train([...])`` calls
    ``mnistlab.api.train`` while ``python -m mnistlab.train`` stays the command."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(import_module("mnistlab.api"), self.__name__.rpartition(".")[2])(*args, **kwargs)


def callable_command(module_name: str) -> None:
    if module_name != "__main__":
        sys.modules[module_name].__class__ = _CommandModule
