"""Every checked config field, declared once with its type and range: the knob vocabularies of the models,
the optimizer's and the data's numbers. ``validate`` runs them over a composed config in a fraction of a
second (no torch), and the code that uses a value (a model built from Python, say) calls ``check`` on the
same declaration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mnistlab.core.errors import ConfigError

NORMS = ("none", "batch")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "selu", "leaky_relu", "elu")
INITS = ("default", "kaiming", "xavier", "zeros")
INTERVALS = ("step", "epoch")
PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine")


def _positive_int(v: Any) -> bool:
    return v > 0 and v == int(v)


@dataclass(frozen=True)
class Field:
    key: str
    choices: tuple[str, ...] = ()
    test: Callable[[Any], bool] | None = None  # for numbers
    allowed: str = ""  # what the error says of a number that fails ``test``

    def check(self, value: Any) -> None:
        if self.choices:
            if str(value) not in self.choices:
                raise ConfigError(f"{self.key}={value!r} is not one of {', '.join(self.choices)}")
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{self.key}={value!r} must be a number")
        if self.test is not None and not self.test(value):
            raise ConfigError(f"{self.key}={value!r} {self.allowed}")


FIELDS = {
    f.key: f
    for f in (
        Field("model.norm", NORMS),
        Field("model.activation", ACTIVATIONS),
        Field("model.init", INITS),
        Field("model.dropout", test=lambda v: 0 <= v < 1, allowed="must be in [0, 1)"),
        Field("optim.lr", test=lambda v: v > 0, allowed="must be > 0"),
        Field("optim.weight_decay", test=lambda v: v >= 0, allowed="must be >= 0"),
        Field("optim.momentum", test=lambda v: 0 <= v < 1, allowed="must be in [0, 1)"),
        Field("scheduler.interval", INTERVALS),
        Field("data.batch_size", test=_positive_int, allowed="must be a positive integer"),
        Field("data.eval_batch_size", test=_positive_int, allowed="must be a positive integer"),
        Field("data.val_size", test=_positive_int, allowed="must be a positive integer"),
        Field("data.test_size", test=_positive_int, allowed="must be a positive integer"),
        Field("trainer.max_epochs", test=lambda v: v == -1 or v >= 1, allowed="must be >= 1 (or -1 for no limit)"),
        Field("trainer.precision", PRECISIONS),
    )
}


def check(key: str, value: Any) -> Any:
    """Check one value against its declaration; returns it unchanged."""
    FIELDS[key].check(value)
    return value


def validate(cfg: DictConfig) -> None:
    """Fail in a second, with one line naming key, value and what is allowed, before data is loaded."""
    for key, field in FIELDS.items():
        value = OmegaConf.select(cfg, key)
        if value is not None:
            field.check(value)
