"""Every checked config field, declared once with its type and range, and the fields of each command.

``validate(cfg, command)`` runs a command's fields over its composed config in a fraction of a second (no
torch), so a wrong type or range is one line naming the key before anything is read or trained. The code that
uses a value (a model or augmentation built from Python, say) calls ``check`` on the same declaration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from mnistlab.core.errors import ConfigError

NORMS = ("none", "batch")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", "selu", "leaky_relu", "elu")
INITS = ("default", "kaiming", "xavier", "zeros")
INTERVALS = ("step", "epoch")
PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "transformer-engine")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
BACKENDS = ("torch", "onnx")
STYLES = ("auto", "mnist", "fit", "resize")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_ints(v: Any) -> bool:
    return isinstance(v, list | tuple | ListConfig) and all(_is_int(i) and i > 0 for i in v)


KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "number": (_is_number, "a number"),
    "int": (_is_int, "an integer"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "auto_or_bool": (lambda v: v == "auto" or isinstance(v, bool), "auto, true or false"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "ints": (_is_ints, "a list of positive integers such as [32,64]"),
    "int_or_ints": (
        lambda v: (_is_int(v) and v > 0) or _is_ints(v),
        "a positive integer, or a list of them such as [5,3]",
    ),
}


@dataclass(frozen=True)
class Field:
    """``kind``: number, int, bool, str, ints (a list of positive integers), int_or_ints, auto_or_bool or choice
    (one of ``choices``);
    ``test``/``allowed``: the range of a number and how the error says it. None is always allowed (unset)."""

    key: str
    kind: str = "number"
    test: Callable[[Any], bool] | None = None
    allowed: str = ""
    choices: tuple[str, ...] = ()

    def check(self, value: Any) -> None:
        if value is None:
            return
        if self.kind == "choice":
            if str(value) not in self.choices:
                raise ConfigError(f"{self.key}={value!r} is not one of {', '.join(self.choices)}")
            return
        is_kind, name = KINDS[self.kind]
        if not is_kind(value):
            raise ConfigError(f"{self.key}={value!r} must be {name}")
        if self.test is not None and not self.test(value):
            raise ConfigError(f"{self.key}={value!r} {self.allowed}")


def number(key: str, test: Callable[[Any], bool] | None = None, allowed: str = "") -> Field:
    return Field(key, "number", test, allowed)


def integer(key: str, low: int = 1, high: int | None = None) -> Field:
    allowed = f"must be an integer >= {low}" if high is None else f"must be an integer in [{low}, {high}]"
    if (low, high) == (1, None):
        allowed = "must be a positive integer"
    return Field(key, "int", lambda v: v >= low and (high is None or v <= high), allowed)


def flag(key: str) -> Field:
    return Field(key, "bool")


def choice(key: str, choices: tuple[str, ...]) -> Field:
    return Field(key, "choice", choices=choices)


def _positive(v: Any) -> bool:
    return v > 0


def _fraction(v: Any) -> bool:
    return 0 <= v < 1


def _holdout(v: Any) -> bool:  # a split's size: a number of samples, or a fraction of the train split
    return 0 < v < 1 if isinstance(v, float) else v >= 1


def _limit(v: Any) -> bool:  # Lightning's limit_*_batches: a fraction of the batches, or a number of them
    return 0 <= v <= 1 if isinstance(v, float) else v >= 0


MODEL = (
    choice("model.norm", NORMS),
    choice("model.activation", ACTIVATIONS),
    choice("model.init", INITS),
    number("model.dropout", _fraction, "must be in [0, 1)"),
    Field("model.name", "str"),
    Field("model.channels", "ints"),
    Field("model.fc", "ints"),
    Field("model.hidden", "ints"),
    Field("model.blocks", "ints"),
    Field("model.kernel_size", "int_or_ints"),
    choice("model.padding", ("same", "valid")),
    integer("model.convs_per_block"),
)
# settings a model takes but has no use for, with the one value a config may give them and why: conf/model/ sets
# them so that one sweep spans several models, and any other value would change nothing, so a run refuses it.
# The model classes still take any valid value: checkpoints of runs made before this check keep loading.
IGNORED: dict[str, dict[str, tuple[Any, str]]] = {
    "linear": {"activation": ("relu", "a linear model has no hidden layer to activate")},
}
OPTIM = (
    Field("optim.name", "str"),
    number("optim.lr", _positive, "must be > 0"),
    number("optim.weight_decay", lambda v: v >= 0, "must be >= 0"),
    number("optim.momentum", _fraction, "must be in [0, 1)"),
    flag("optim.nesterov"),
)
SCHEDULER = (
    Field("scheduler.name", "str"),
    choice("scheduler.interval", INTERVALS),
    integer("scheduler.step_size"),
    number("scheduler.gamma", _positive, "must be > 0"),
    number("scheduler.pct_start", lambda v: 0 < v < 1, "must be in (0, 1)"),
    number("scheduler.eta_min", lambda v: v >= 0, "must be >= 0"),
)
AUGMENT = (
    number("data.augment.rotation", lambda v: 0 <= v <= 180, "must be in [0, 180] degrees"),
    number("data.augment.translate", _fraction, "must be in [0, 1)"),
    number("data.augment.scale", _fraction, "must be in [0, 1)"),
    number("data.augment.shear", lambda v: 0 <= v < 90, "must be in [0, 90) degrees"),
    number("data.augment.perspective", _fraction, "must be in [0, 1)"),
    number("data.augment.perspective_p", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    flag("data.augment.hflip"),
    number("data.augment.crop_scale", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    number("data.augment.color_jitter", _fraction, "must be in [0, 1)"),
    number("data.augment.erasing", lambda v: 0 <= v <= 1, "must be a probability in [0, 1]"),
)
DATA = (
    Field("data.dataset", "str"),
    Field("data.data_dir", "str"),
    integer("data.batch_size"),
    integer("data.eval_batch_size"),
    number("data.val_size", _holdout, "must be a number of samples >= 1 or a fraction in (0, 1)"),
    number("data.test_size", _holdout, "must be a number of samples >= 1 or a fraction in (0, 1)"),
    Field("data.root", "str"),
    Field("data.csv", "str"),
    Field("data.hf_path", "str"),
    Field("data.image_column", "str"),
    Field("data.label_column", "str"),
    Field("data.split_column", "str"),
    integer("data.image_size", 1, 4096),
    choice("data.channels", ("1", "3")),
    flag("data.skip_bad"),
    integer("data.seed", 0, 2**32 - 1),
    integer("data.num_folds", 0, 100),
    integer("data.fold", 0),
    flag("data.permute_pixels"),
    integer("data.permutation_seed", 0, 2**32 - 1),
    Field("data.on_device", "auto_or_bool"),
    integer("data.num_canvases.train", 1, 1_000_000),
    integer("data.num_canvases.val", 1, 1_000_000),
    integer("data.num_canvases.test", 1, 1_000_000),
    flag("data.download"),
    *AUGMENT,
)
TRAINER = (
    Field("trainer.max_epochs", "int", lambda v: v == -1 or v >= 1, "must be >= 1 (or -1 for no limit)"),
    choice("trainer.precision", PRECISIONS),
    choice("trainer.accelerator", ACCELERATORS),
    integer("trainer.log_every_n_steps"),
    integer("trainer.check_val_every_n_epoch"),
    integer("trainer.num_sanity_val_steps", -1),
    number("trainer.limit_train_batches", _limit, "must be a fraction in [0, 1] or a number of batches >= 0"),
    number("trainer.limit_val_batches", _limit, "must be a fraction in [0, 1] or a number of batches >= 0"),
    number("trainer.limit_test_batches", _limit, "must be a fraction in [0, 1] or a number of batches >= 0"),
    number("trainer.overfit_batches", _limit, "must be a fraction in [0, 1] or a number of batches >= 0"),
    number("trainer.gradient_clip_val", lambda v: v >= 0, "must be >= 0"),
    flag("trainer.deterministic"),
    flag("trainer.benchmark"),
    flag("trainer.enable_progress_bar"),
    flag("trainer.enable_model_summary"),
    integer("trainer.num_nodes"),
)
PREPROCESS = choice("preprocess", STYLES)
SERVING = (
    choice("backend", BACKENDS),
    PREPROCESS,
    integer("max_image_pixels"),
    number("max_decoded_mb", _positive, "must be > 0"),
)
COMMANDS: dict[str, tuple[Field, ...]] = {
    "train": (
        integer("seed", 0, 2**32 - 1),
        *MODEL,
        *OPTIM,
        *SCHEDULER,
        *DATA,
        *TRAINER,
        flag("test"),
        flag("skip_completed"),
        flag("tune.lr_find"),
        number("tune.min_lr", _positive, "must be > 0"),
        number("tune.max_lr", _positive, "must be > 0"),
        integer("tune.num_training"),
        number("tune.max_factor", lambda v: v >= 1, "must be >= 1 (a factor either side of optim.lr)"),
        number("loss.label_smoothing", _fraction, "must be in [0, 1)"),
        number("ema.decay", lambda v: 0 < v < 1, "must be in (0, 1), e.g. 0.999 (null: off)"),
        flag("speed.compile"),
        flag("speed.channels_last"),
        integer("speed.threads"),
        integer("speed.jobs_per_gpu"),
    ),
    "evaluate": (*DATA, *TRAINER),
    "predict": (
        *SERVING,
        choice("output", ("text", "json")),
        integer("batch_size"),
    ),
    "serve": (
        *SERVING,
        Field("host", "str"),
        integer("port", 0, 65535),
        number("max_upload_mb", _positive, "must be > 0"),
        integer("workers"),
        integer("max_connections"),
        integer("max_connections_per_client"),
        number("idle_timeout_s", lambda v: 0 < v <= 3600, "must be in (0, 3600] seconds"),
        number("header_timeout_s", lambda v: 0 < v <= 3600, "must be in (0, 3600] seconds"),
        number("body_timeout_s", lambda v: 0 < v <= 3600, "must be in (0, 3600] seconds"),
        integer("threads"),
        flag("access_log"),
        choice("log_level", LOG_LEVELS),
    ),
    "export": (
        choice("format", ("onnx", "torchscript")),
        PREPROCESS,
        number("tolerance", lambda v: v >= 0, "must be >= 0"),
    ),
    "scratch": (
        integer("seed", 0, 2**32 - 1),
        *DATA,
        choice("scratch.model", ("softmax", "mlp")),
        integer("scratch.hidden"),
        number("scratch.lr", _positive, "must be > 0"),
        integer("scratch.batch_size"),
        integer("scratch.epochs"),
        integer("scratch.patience", 0),
        flag("scratch.standardize"),
    ),
}
FIELDS = {f.key: f for fields in COMMANDS.values() for f in fields}


def check(key: str, value: Any) -> Any:
    """Check one value against its declaration; returns it unchanged."""
    FIELDS[key].check(value)
    return value


def check_used(model: Any) -> None:
    """One line for a setting that ``model.name`` takes but ignores (``IGNORED``), given another value than the
    one it allows."""
    name = model.get("name") if isinstance(model, dict | DictConfig) else None
    for key, (allowed, why) in IGNORED.get(str(name), {}).items():
        value = model.get(key)
        if value is not None and value != allowed:
            raise ConfigError(
                f"model.{key}={value!r} does nothing for model.name={name!r} ({why}); leave it at {allowed}"
            )


# config groups a command cannot run without: `~group` on the command line removes one
REQUIRED_GROUPS = {"train": ("paths", "data", "model", "optim", "scheduler", "trainer", "logger", "callbacks")}


def validate(cfg: DictConfig, command: str = "train") -> None:
    """Fail in a second, with one line naming key, value and what is allowed, before anything is read."""
    for group in REQUIRED_GROUPS.get(command, ()):
        if group not in cfg:
            from mnistlab.core.config import presets

            raise ConfigError(
                f"~{group} removed the {group} group, which mnistlab-{command} needs; choose one of its presets "
                f"({', '.join(presets(group))}) instead"
            )
    for field in COMMANDS[command]:
        try:
            value = OmegaConf.select(cfg, field.key, throw_on_missing=True)
        except Exception as err:  # a mandatory value (???) left unset, or an interpolation that cannot resolve
            raise ConfigError(f"{field.key} is not set ({type(err).__name__}); give it on the command line") from None
        field.check(value)
    if any(field.key == "model.name" for field in COMMANDS[command]):
        check_used(cfg.get("model"))
