"""A search space declared as data (YAML or command-line sweep syntax) and sampled through an Optuna trial.

    params:
      optim: {type: categorical, choices: [sgd_momentum, adamw]}
      optim.lr: {type: float, low: 1.0e-4, high: 0.1, log: true}
      optim.momentum: {type: float, low: 0.8, high: 0.99, when: {optim: sgd_momentum}}
      model.dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}
      data.batch_size: {type: int, low: 64, high: 512, log: true}

On the command line the same sweep syntax as a grid works: ``model.norm=none,batch`` (categorical),
``optim.lr=tag(log,interval(1e-4,1e-1))`` (float, log scale), ``data.batch_size=range(64,513,64)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mnistlab.core.errors import ConfigError

TYPES = ("float", "int", "categorical")


@dataclass
class Param:
    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)
    when: dict[str, list[Any]] = field(default_factory=dict)

    def active(self, chosen: dict[str, Any]) -> bool:
        """A conditional parameter is sampled only when the parameters it depends on took one of its values."""
        return all(str(chosen.get(key)) in {str(v) for v in values} for key, values in self.when.items())

    def suggest(self, trial: Any) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, self.choices)
        assert self.low is not None and self.high is not None  # a numeric Param always has its range
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)


def _param(key: str, spec: Any) -> Param:
    if not isinstance(spec, dict) or spec.get("type") not in TYPES:
        raise ConfigError(f"hparams_search param {key}: give type (one of {', '.join(TYPES)}) and its range or choices")
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices", "when"}
    if unknown:
        raise ConfigError(f"hparams_search param {key}: unknown field(s) {', '.join(sorted(unknown))}")
    when = {k: v if isinstance(v, list) else [v] for k, v in (spec.get("when") or {}).items()}
    if spec["type"] == "categorical":
        choices = list(spec.get("choices") or [])
        if not choices:
            raise ConfigError(f"hparams_search param {key}: a categorical needs choices: [a, b]")
        return Param(key, "categorical", choices=choices, when=when)
    try:
        low, high = float(spec["low"]), float(spec["high"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"hparams_search param {key}: low and high must be numbers") from None
    if not low < high or (spec.get("log") and low <= 0):
        raise ConfigError(f"hparams_search param {key}: need low < high (and low > 0 on a log scale)")
    step = spec.get("step")
    return Param(key, spec["type"], low, high, bool(spec.get("log")), float(step) if step else None, when=when)


def _from_override(override: Any) -> Param:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    key, sweep = override.get_key_element(), override.value()  # with its prefix: +a=1,2 adds a key, as in a grid
    if isinstance(sweep, IntervalSweep):
        kind = "int" if isinstance(sweep.start, int) and isinstance(sweep.end, int) else "float"
        assert sweep.start is not None and sweep.end is not None  # interval(start, end) needs both
        return Param(key, kind, float(sweep.start), float(sweep.end), log="log" in (sweep.tags or set()))
    if isinstance(sweep, RangeSweep | ChoiceSweep):
        return Param(key, "categorical", choices=list(override.sweep_iterator()))
    raise ConfigError(f"{key}: a search takes a,b,c, choice(…), range(…) or interval(…), not {override.input_line}")


def parse_space(params: dict[str, Any] | None, arguments: list[str]) -> tuple[list[Param], list[str]]:
    """The search space (the YAML params, then sweeps given on the command line, which replace a param of the
    same key) and the fixed overrides every trial gets. An empty space is one trial of the fixed overrides, as
    Hydra's basic sweeper runs one job when nothing is swept."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    space = {key: _param(key, spec) for key, spec in (params or {}).items()}
    fixed: list[str] = []
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_sweep_override():
            space.pop(override.key_or_group, None)
            space[override.get_key_element()] = _from_override(override)
        else:
            assert override.input_line is not None  # set for every override parsed from a string
            fixed.append(override.input_line)
            space.pop(override.key_or_group, None)  # a value given on the command line is not searched
    given = {line.partition("=")[0].lstrip("+~"): line.partition("=")[2] for line in fixed}
    for key, param in list(space.items()):
        for parent in [k for k in param.when if k not in space and k in given]:
            # its parent is fixed on the command line: searched always when the fixed value meets the condition,
            # never otherwise (optim=adamw leaves out the momentum of sgd_momentum)
            if given[parent] in {str(v) for v in param.when[parent]}:
                del param.when[parent]
            else:
                space.pop(key)
                break
    for param in space.values():
        missing = [k for k in param.when if k not in space]
        if missing:
            raise ConfigError(f"hparams_search param {param.key}: 'when' names {missing[0]}, which is not searched")
    return _dependency_order(list(space.values())), fixed


def _dependency_order(params: list[Param]) -> list[Param]:
    """Each parameter after those its ``when`` names (so that its condition can be evaluated), otherwise in
    declaration order, whatever order the space declares them in; a cycle of conditions is refused."""
    ordered: list[Param] = []
    placed: set[str] = set()
    left = list(params)
    while left:
        ready = [p for p in left if set(p.when) <= placed]
        if not ready:
            names = ", ".join(sorted(p.key for p in left if p.when))
            raise ConfigError(f"hparams_search params {names}: their 'when' conditions depend on each other in a cycle")
        ordered += ready
        placed |= {p.key for p in ready}
        left = [p for p in left if p.key not in placed]
    return ordered


def sample(space: list[Param], trial: Any) -> dict[str, Any]:
    """The trial's values for the active parameters (conditional ones only when their condition holds)."""
    chosen: dict[str, Any] = {}
    for param in space:
        if param.active(chosen):
            chosen[param.key] = param.suggest(trial)
    return chosen


PLAIN = re.compile(r"[A-Za-z_][\w./-]*")
KEYWORDS = {"true", "false", "null", "nan", "inf"}


def as_overrides(values: dict[str, Any]) -> list[str]:
    """Overrides Hydra reads back as the same values: strings quoted unless plain words (a string such as
    ``a,b``, ``1e-3`` or ``true`` would otherwise become a sweep, a number or a bool)."""

    def text(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, int | float):
            return repr(value)
        value = str(value)
        if PLAIN.fullmatch(value) and value.lower() not in KEYWORDS:
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return [f"{key}={text(value)}" for key, value in values.items()]
