"""The one in-process data cache: a sweep's later jobs reuse what the first job read, split and measured.

Keys name what was read (paths with sizes and modification times, split settings), so replaced files are
read again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
_CACHE: dict[Hashable, Any] = {}


def cached(key: Hashable, compute: Callable[[], T]) -> T:
    if key not in _CACHE:
        _CACHE[key] = compute()
    return _CACHE[key]
