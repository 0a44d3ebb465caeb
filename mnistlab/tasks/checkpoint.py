"""Reading checkpoints as data: ``torch.load(weights_only=True)`` (no pickled code runs), the stored
architecture, optimizer, scheduler and dataset looked up by name in our registries, and anything that asks
for code (Hydra's ``_target_`` and friends, at any depth) refused with one line.

Checkpoints of older formats (classes named by import path: ``mnistlab.models.CNN``, ``torch.optim.SGD``) are
brought up to date by :mod:`mnistlab.core.compat`, as text: nothing is imported.
"""

from __future__ import annotations

from typing import Any

import torch

from mnistlab.core.compat import RUN_CONFIG_KEY, UnknownFormat, upgrade_checkpoint
from mnistlab.core.config import CODE_KEYS
from mnistlab.core.errors import ConfigError, MnistlabError, first_line


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
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
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
    return checkpoint


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


def load_task(path: Any) -> tuple[Any, dict[str, Any]]:
    """The task module (in eval mode, on the CPU) rebuilt from a checkpoint, and the checkpoint dict."""
    from mnistlab.tasks import task_class

    checkpoint = read_checkpoint(path)
    hparams = {**checkpoint["hyper_parameters"], "compile": False}
    try:
        module = task_class(hparams.get("model"))(**hparams)
        module.load_state_dict(checkpoint["state_dict"])
    except MnistlabError as err:
        raise ConfigError(f"ckpt_path={path}: {err}") from None
    except (TypeError, KeyError, RuntimeError, ValueError, AttributeError) as err:
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
