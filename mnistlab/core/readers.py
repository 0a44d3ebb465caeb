"""Files a run dir holds, read back as plain data: a size cap, YAML without aliases or tags, JSON without NaN
tricks. What a run dir says is never code, never interpolated, and never large enough to stall a reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_RECORD_BYTES = 2_000_000


class RecordError(ValueError):
    """A record that is missing, too large or not plain data."""


def _text(path: Path, limit: int) -> str:
    try:
        size = path.stat().st_size
    except OSError as err:
        raise RecordError(f"{path} cannot be read ({err.strerror or err})") from None
    if not path.is_file():
        raise RecordError(f"{path} is not a file")
    if size > limit:
        raise RecordError(f"{path} is {size:,} bytes, more than a record holds ({limit:,})")
    return path.read_text(errors="replace")


def read_yaml(path: Path, limit: int = MAX_RECORD_BYTES) -> Any:
    """YAML as plain data: safe types only, and an alias (``*a``, which can expand a few hundred bytes into
    billions of nodes) is refused."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise RecordError(f"{path} uses a YAML alias; records are plain data")
            return super().compose_node(parent, index)

    try:
        return yaml.load(_text(Path(path), limit), Loader=NoAliases)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise RecordError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None


def read_json(path: Path, limit: int = MAX_RECORD_BYTES) -> Any:
    try:
        return json.loads(_text(Path(path), limit))
    except ValueError as err:
        raise RecordError(f"{path} is not valid JSON ({err})") from None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys (``{"optim": {"lr": 0.1}}`` → ``{"optim.lr": 0.1}``); lists stay values."""
    if not isinstance(data, dict):
        return {prefix: data} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat
