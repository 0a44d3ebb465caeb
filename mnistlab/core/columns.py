"""The columns of a run's record, each declared once.

``HPARAM_COLUMNS``: the HParams row every run logs (TensorBoard, metrics.json, the sweep report's factors):
each column's name, value type, the override keys that set it and where its value is read in the composed
config; a new column is one line. The metric tags (``METRICS``, ``RANK_BY``…) belong to the run's record and
are declared in :mod:`mnistlab.core.record`; they are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# the metric tags belong to the record (core/record.py): re-exported for the modules that read both tables
from mnistlab.core.record import HPARAM_METRICS, METRICS, NUMBERS, RANK_BY, TITLES, Metric


@dataclass(frozen=True)
class HParamSource:
    """What a run's HParams values are read from: its composed config, Hydra's chosen group options (``data``
    → ``mnist_aug``) and the learning rate applied (after the LR finder, if it ran)."""

    cfg: Any
    choices: Mapping[str, Any]
    lr: float

    def choice(self, group: str) -> Any:
        return self.choices.get(group)

    def get(self, key: str, default: Any = None) -> Any:
        """The config's value at a dotted key; ``default`` when the key is absent."""
        from omegaconf import OmegaConf

        return OmegaConf.select(self.cfg, key, default=default)


def scalar(value: Any) -> str | int | float | bool:
    """A value TensorBoard's HParams accept: scalars as they are, None as ``"none"``, anything else as text."""
    from omegaconf import OmegaConf

    if isinstance(value, bool | int | float | str):
        return value
    if value is None:
        return "none"
    return str(list(value)) if OmegaConf.is_list(value) or isinstance(value, list | tuple) else str(value)


@dataclass(frozen=True)
class HParamColumn:
    """One column of the HParams row. ``keys``: the override keys that set it, when they differ from its name
    (``optim.lr`` → ``lr``); ``read``: where its value is in the config, converted to ``type`` on the way out."""

    name: str
    type: type
    read: Callable[[HParamSource], Any]
    keys: tuple[str, ...] = ()

    def value(self, source: HParamSource) -> str | int | float | bool:
        raw = self.read(source)
        return scalar(raw) if self.type is str else self.type(raw)


# every run logs these columns, in this order, then the keys its sweep varies that are not among them
HPARAM_COLUMNS: tuple[HParamColumn, ...] = (
    # the data preset swept or chosen (mnist_aug), never collapsed to its dataset's name
    HParamColumn("data", str, lambda s: s.choice("data") or s.get("data.dataset")),
    HParamColumn("dataset", str, lambda s: s.get("data.dataset", s.choice("data")), ("data.dataset",)),
    HParamColumn("model", str, lambda s: s.choice("model")),
    HParamColumn("norm", str, lambda s: s.get("model.norm"), ("model.norm",)),
    HParamColumn("dropout", float, lambda s: s.get("model.dropout", 0.0), ("model.dropout",)),
    HParamColumn("activation", str, lambda s: s.get("model.activation"), ("model.activation",)),
    HParamColumn("init", str, lambda s: s.get("model.init"), ("model.init",)),
    HParamColumn("optim", str, lambda s: s.choice("optim")),
    HParamColumn("lr", float, lambda s: s.lr, ("optim.lr",)),
    HParamColumn("weight_decay", float, lambda s: s.get("optim.weight_decay", 0.0) or 0.0, ("optim.weight_decay",)),
    HParamColumn("scheduler", str, lambda s: s.choice("scheduler")),
    HParamColumn("trainer", str, lambda s: s.choice("trainer")),
    HParamColumn("batch_size", int, lambda s: s.get("data.batch_size"), ("data.batch_size",)),
    HParamColumn("precision", str, lambda s: str(s.get("trainer.precision", "32-true")), ("trainer.precision",)),
    HParamColumn("seed", int, lambda s: s.get("seed")),
    # -1: not a cross-validation run
    HParamColumn("fold", int, lambda s: s.get("data.fold", 0) if s.get("data.num_folds") else -1, ("data.fold",)),
    HParamColumn("permute_pixels", bool, lambda s: s.get("data.permute_pixels", False), ("data.permute_pixels",)),
    HParamColumn(
        "label_smoothing", float, lambda s: s.get("loss.label_smoothing", 0.0) or 0.0, ("loss.label_smoothing",)
    ),
    HParamColumn("ema_decay", float, lambda s: s.get("ema.decay") or 0.0, ("ema.decay",)),  # 0: no averaged weights
)
# an override's key → the name of its column in the HParams row (keys not listed keep their own name)
HPARAM_OF: dict[str, str] = {key: column.name for column in HPARAM_COLUMNS for key in column.keys}

__all__ = [
    "HPARAM_COLUMNS",
    "HPARAM_METRICS",
    "HPARAM_OF",
    "METRICS",
    "NUMBERS",
    "RANK_BY",
    "TITLES",
    "HParamColumn",
    "HParamSource",
    "Metric",
    "scalar",
]
