"""Name → class tables: configs and checkpoints say ``cnn``, a registry knows the class.

Nothing is ever imported by name: a registry holds only what our own modules registered when they were
imported, so a checkpoint naming ``os.system`` finds nothing and is refused with one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from mnistlab.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """``register(name)`` as a decorator; ``get(name)`` with an error listing the choices."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind, self.key = kind, key  # e.g. "model", "model.name": what the error message names
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        def add(obj: T) -> T:
            self.add(name, obj, **meta)
            return obj

        return add

    def add(self, name: str, obj: T, **meta: Any) -> None:
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        self._meta[name] = meta

    def get(self, name: Any) -> T:
        if not isinstance(name, str) or name not in self._entries:
            raise ConfigError(f"{self.key}={name!r} is not a registered {self.kind}; choose one of {', '.join(self)}")
        return self._entries[name]

    def meta(self, name: Any) -> dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))
