"""Reading checkpoints as data: ``torch.load(weights_only=True)`` (no pickled code runs), the stored
architecture, optimizer, scheduler and dataset looked up by name in our registries, and anything that asks
for code (Hydra's ``_target_`` and friends, at any depth) refused with one line.

Checkpoints of older formats (classes named by import path: ``mnistlab.models.CNN``, ``torch.optim.SGD``) are
brought up to date by :mod:`mnistlab.core.compat`, as text: nothing is imported.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from mnistlab.core.compat import RUN_CONFIG_KEY, UnknownFormat, upgrade_checkpoint
from mnistlab.core.config import CODE_KEYS
from mnistlab.core.errors import ConfigError, MnistlabError, first_line
from mnistlab.core.fields import FIELDS


def find_code(value: Any, where: str) -> str | None:
    """The first place in ``value`` (nested dicts and lists) that holds one of Hydra's instantiation keys."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in CODE_KEYS:
                return f"{where}.{key}"
            found = find_code(item, f"{where}.{key}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = find_code(item, f"{where}[{index}]")
            if found:
                return found
    return None


def read_checkpoint(path: Any) -> dict[str, Any]:
    """A checkpoint dict whose hyper-parameters and stored data config are plain, named values."""
    if not path:
        raise ConfigError(
            "ckpt_path is required: a checkpoint of mnistlab.train, e.g. ckpt_path=outputs/…/checkpoints/best.ckpt"
        )
    try:
        if Path(path).exists() and not Path(path).is_dir() and not stat.S_ISREG(Path(path).stat().st_mode):
            # a device or a FIFO: reading it would never end, or block until a writer comes
            raise ConfigError(f"ckpt_path={path} is not a regular file; name the checkpoint file (…/best.ckpt)")
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except ConfigError:
        raise
    except FileNotFoundError:
        raise ConfigError(f"ckpt_path={path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"ckpt_path={path} is a folder; name the checkpoint file (…/checkpoints/best.ckpt)") from None
    except Exception as err:  # unpickling refuses anything but tensors and plain containers
        raise ConfigError(f"ckpt_path={path} is not a readable mnistlab checkpoint ({first_line(err)})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise ConfigError(f"ckpt_path={path} is not a Lightning checkpoint of mnistlab (no hyper_parameters)")
    if "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt_path={path} is not a Lightning checkpoint of mnistlab (no state_dict)")
    run = checkpoint.get(RUN_CONFIG_KEY)
    if run is not None and not (isinstance(run, dict) and isinstance(run.get("config", {}), dict)):
        raise ConfigError(f"ckpt_path={path} has a malformed '{RUN_CONFIG_KEY}' entry")
    check_finite(checkpoint["state_dict"], path)
    try:
        upgrade_checkpoint(checkpoint)
    except UnknownFormat as err:
        raise ConfigError(f"ckpt_path={path} is not a readable mnistlab checkpoint ({err})") from None
    for where, value in (
        ("hyper_parameters", checkpoint["hyper_parameters"]),
        ("config.data", stored_data(checkpoint)),
    ):
        found = find_code(value, where)
        if found:
            raise ConfigError(
                f"ckpt_path={path} is refused: {found} asks for code to be run; checkpoints hold names and values only"
            )
    check_stored_data(stored_data(checkpoint), path)
    return checkpoint


def _settings(value: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """(key, value) of every setting in nested dicts, keys dotted as on the command line."""
    for key, item in value.items():
        if isinstance(item, dict):
            yield from _settings(item, f"{prefix}.{key}")
        else:
            yield f"{prefix}.{key}", item


def check_stored_data(data: dict[str, Any], path: Any) -> None:
    """The stored data settings pass the declarations the command line's ``data.*`` pass (core/fields.py):
    evaluate rebuilds the data from them, predict and serve read the pixel permutation from them."""
    for key, value in _settings(data, "data"):
        if key in FIELDS:
            try:
                FIELDS[key].check(value)
            except ConfigError as err:
                raise ConfigError(f"ckpt_path={path} stores an invalid data setting: {err}") from None


def check_finite(state_dict: Any, path: Any) -> None:
    """Weights that are NaN or infinite cannot predict anything: refuse them when the checkpoint is read."""
    if not isinstance(state_dict, dict):
        raise ConfigError(f"ckpt_path={path} has a malformed state_dict")
    for key, value in state_dict.items():
        if not (key.startswith("net.") or key in ("mean", "inv_std")):
            continue  # metric states (a best of -inf before the first epoch) are not weights
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ConfigError(
                f"ckpt_path={path} holds weights that are not finite numbers ({key}): the run diverged; "
                "use an earlier checkpoint"
            )


def stored_data(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The data config the checkpoint's run trained on ({} when it holds none)."""
    data = checkpoint.get(RUN_CONFIG_KEY, {}).get("config", {}).get("data", {})
    return data if isinstance(data, dict) else {}


MAX_CHANNELS, MAX_SIDE = 4, 4096  # beyond any image model here: a 60000×60000 card would allocate gigabytes
# weights of these dtypes load into the model's float32 parameters: float16 and bfloat16 exactly (a run trained
# with trainer.precision=16-true or bf16-true saves them), float64 rounded to the float32 the model computes in
FLOAT_WEIGHTS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def card_problem(classes: Any, input_shape: Any, outputs: int | None = None) -> str | None:
    """What is wrong with a model's card (its class names and input shape), or None: checked before a model
    is built from it or an image is fed to it. ``outputs``: the model's output count, when known."""
    if not (
        isinstance(input_shape, list | tuple)
        and len(input_shape) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in input_shape)
        and input_shape[0] <= MAX_CHANNELS
        and max(input_shape[1:]) <= MAX_SIDE
    ):
        return (
            f"input_shape={list(input_shape) if isinstance(input_shape, tuple) else input_shape!r} is not "
            f"(C, H, W) with C <= {MAX_CHANNELS} and sides <= {MAX_SIDE}"
        )
    if not isinstance(classes, list | tuple) or not classes or not all(isinstance(c, str) for c in classes):
        return "classes is not a list of class names"
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        return f"classes names {', '.join(map(repr, repeated[:3]))} more than once; each class needs its own name"
    if outputs is not None and outputs != len(classes):
        return f"classes has {len(classes)} names for the model's {outputs} outputs"
    return None


def check_weights(module: Any, state_dict: dict[str, Any], path: Any) -> None:
    """Weights of a dtype the model does not hold are refused, not cast silently: an integer or boolean tensor
    for a floating-point parameter is a corrupt or foreign file. Floating-point weights of ``FLOAT_WEIGHTS``
    are accepted and cast to the model's float32; integer buffers (BatchNorm's batch count) must match exactly."""
    expected = module.state_dict()
    for key, value in state_dict.items():
        want = expected.get(key)
        if want is None or not torch.is_tensor(value):
            continue  # an unknown key or a non-tensor fails load_state_dict with its own message
        if want.is_floating_point() and value.dtype not in FLOAT_WEIGHTS:
            raise ConfigError(
                f"ckpt_path={path} holds {key} as {value.dtype}; weights must be float32 (or float16, bfloat16, "
                "float64): the file is corrupt or not of mnistlab"
            )
        if not want.is_floating_point() and value.dtype != want.dtype:
            raise ConfigError(f"ckpt_path={path} holds {key} as {value.dtype}, not {want.dtype}: the file is corrupt")


def load_task(path: Any) -> tuple[Any, dict[str, Any]]:
    """The task module (in eval mode, on the CPU) rebuilt from a checkpoint, and the checkpoint dict. Its card
    (input shape, classes) is checked before the model is built, and weights of a foreign dtype refused."""
    from mnistlab.tasks import task_class

    checkpoint = read_checkpoint(path)
    hparams = {**checkpoint["hyper_parameters"], "compile": False}
    num_classes = hparams.get("num_classes")
    classes = hparams.get("classes")
    if classes is None and isinstance(num_classes, int) and 0 < num_classes <= 100_000:
        classes = [str(i) for i in range(num_classes)]
    problem = card_problem(classes, hparams.get("input_shape"), num_classes if isinstance(num_classes, int) else None)
    if problem:
        raise ConfigError(f"ckpt_path={path} has a card that does not fit its model: {problem}")
    mismatch = (TypeError, KeyError, RuntimeError, ValueError, AttributeError)
    try:
        module = task_class(hparams.get("model"))(**hparams)
    except MnistlabError as err:
        raise ConfigError(f"ckpt_path={path}: {err}") from None
    except mismatch as err:
        raise ConfigError(f"ckpt_path={path} does not match its architecture: {first_line(err)}") from None
    check_weights(module, checkpoint["state_dict"], path)
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except mismatch as err:
        raise ConfigError(f"ckpt_path={path} does not match its architecture: {first_line(err)}") from None
    return module.eval(), checkpoint


def check_same_architecture(path: str, model: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint that is corrupt, unsafe, or of another architecture than ``model`` fails here, in a second.
    Returns its hyper-parameters."""
    ignored = ("dropout", "activation", "init")  # may change when fine-tuning: they do not shape the parameters
    from mnistlab.models.registry import with_defaults

    hparams = read_checkpoint(path)["hyper_parameters"]
    saved = with_defaults(hparams.get("model") or {})
    wanted = {k: v for k, v in with_defaults(model).items() if k not in ignored}
    saved = {k: v for k, v in saved.items() if k not in ignored}
    if saved != wanted:
        diff = sorted(
            (k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k)), key=lambda k: (k != "name", k)
        )
        shown = ", ".join(f"model.{k}={saved.get(k)!r} (not {wanted.get(k)!r})" for k in diff[:3])
        raise ConfigError(f"ckpt_path={path} holds another architecture: {shown}; train with the same model")
    return hparams


def check_same_optimization(run_dir: str, saved: dict[str, Any], optim: dict, scheduler: dict | None) -> None:
    """A resumed run restores its optimizer's and scheduler's state: they cannot change kind mid-run."""
    for key, now, then in (
        ("optim.name", optim.get("name"), (saved.get("optim") or {}).get("name")),
        ("scheduler.name", (scheduler or {}).get("name", "none"), (saved.get("scheduler") or {}).get("name", "none")),
    ):
        if now != then:
            raise ConfigError(
                f"resume={run_dir}: {key}={now!r} is not the run's {then!r}; a run cannot change it midway "
                "(fine-tune a new run from its weights with ckpt_path=…/best.ckpt)"
            )
