"""What older mnistlab wrote, read by today's code: run records (metrics.json), checkpoints and the run configs
a resume replays. Records and checkpoints carry a format version; reading one applies, in order, the upgrade
steps from its version to today's. Each step names the version it upgrades from and changes plain data only
(as text: nothing is imported), so the checks that follow still refuse a file that asks for code.

Files are upgraded in memory when they are read, never rewritten on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# the checkpoint entry that holds the run's resolved config and the checkpoint's format
RUN_CONFIG_KEY = "mnistlab"
# the format of the checkpoints written today; a checkpoint whose entry has no ``format`` is version 1
FORMAT = "format"  # the key of a record's or a checkpoint's format version
RECORD_VERSION = 2  # metrics.json (core/record.py writes it)
CHECKPOINT_VERSION = 2


class UnknownFormat(ValueError):
    """A format version this mnistlab cannot read: not a number, or written by a newer mnistlab."""


@dataclass(frozen=True)
class Step:
    """Upgrades data of version ``upgrades_from`` to the next version, in place; ``why`` says what changed."""

    upgrades_from: int
    why: str
    apply: Callable[[dict[str, Any]], None]


def _apply(data: dict[str, Any], version: int, steps: tuple[Step, ...]) -> None:
    for step in steps:
        if step.upgrades_from >= version:
            step.apply(data)


def _check_version(version: Any, latest: int, what: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= latest:
        raise UnknownFormat(f"{what} format {version!r} is not one this mnistlab reads (1 to {latest})")
    return version


# -- run records (metrics.json) -------------------------------------------------------------------------------
def _nothing(data: dict[str, Any]) -> None:
    """The layout did not change: the version alone did."""


RECORD_STEPS: tuple[Step, ...] = (Step(1, "records name their format (format: 2)", _nothing),)


def upgrade_record(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` in today's format (:class:`UnknownFormat` for a format this mnistlab cannot read)."""
    version = _check_version(record.get(FORMAT, 1), RECORD_VERSION, "record")
    upgraded = dict(record)
    _apply(upgraded, version, RECORD_STEPS)
    upgraded[FORMAT] = RECORD_VERSION
    return upgraded


# -- checkpoints ----------------------------------------------------------------------------------------------
# checkpoints written before the registries named their classes by import path; what they are called now
IMPORT_PATH_MODELS = {
    "mnistlab.models.CNN": "cnn",
    "mnistlab.models.MLP": "mlp",
    "mnistlab.models.SoftmaxRegression": "linear",
    "mnistlab.models.ResNet": "resnet",
    "mnistlab.models.FasterRCNN": "fasterrcnn",
}
IMPORT_PATH_DATASETS = {
    "mnistlab.data.CIFAR10DataModule": "cifar10",
    "mnistlab.data.TinyImageNetDataModule": "tiny_imagenet",
    "mnistlab.data.detection.MNISTDetectionDataModule": "mnist_detection",
}
IMPORT_PATH_PREFIXES = {"optim": "torch.optim.", "scheduler": "torch.optim.lr_scheduler."}
MODEL_RUNTIME_KEYS = ("compile", "channels_last")  # model settings then, the run's (speed.*) now


def _named_section(section: Any, kind: str) -> Any:
    """A ``{_target_: <import path>, _partial_: true, …}`` section → ``{name: <registry name>, …}``; a target
    that is not one of these exact paths is left as it is (the checkpoint reader refuses it)."""
    if not isinstance(section, dict) or "_target_" not in section:
        return section
    target = section["_target_"]
    upgraded = {k: v for k, v in section.items() if k not in ("_target_", "_partial_")}
    if kind == "model" and target in IMPORT_PATH_MODELS:
        upgraded = {k: v for k, v in upgraded.items() if k not in MODEL_RUNTIME_KEYS}
        return {"name": IMPORT_PATH_MODELS[target], **upgraded}
    if kind == "scheduler" and target is None:
        return {"name": "none"}
    if kind in IMPORT_PATH_PREFIXES and isinstance(target, str) and target.startswith(IMPORT_PATH_PREFIXES[kind]):
        rest = target.removeprefix(IMPORT_PATH_PREFIXES[kind])
        if rest.isidentifier():
            return {"name": rest.lower(), **upgraded}
    if kind == "data" and target == "mnistlab.data.MNISTDataModule":
        return {"dataset": upgraded.pop("dataset", "mnist"), **upgraded}
    if kind == "data" and target in IMPORT_PATH_DATASETS:
        if target.endswith("MNISTDetectionDataModule"):
            upgraded["digits"] = upgraded.pop("dataset", "mnist")
        return {"dataset": IMPORT_PATH_DATASETS[target], **upgraded}
    return section


def _registry_names(checkpoint: dict[str, Any]) -> None:
    hparams = checkpoint["hyper_parameters"]
    for kind in ("model", "optim", "scheduler"):
        hparams[kind] = _named_section(hparams.get(kind), kind)
    config = (checkpoint.get(RUN_CONFIG_KEY) or {}).get("config")
    if isinstance(config, dict) and "data" in config:
        config["data"] = _named_section(config["data"], "data")


CHECKPOINT_STEPS: tuple[Step, ...] = (
    # version 1 covers every checkpoint without a format: the oldest name classes by import path, the rest
    # (mnistlab 0.1.0) by registry name already, which this step leaves as they are
    Step(1, "sections named by import path (_target_) → registry names; model runtime keys dropped", _registry_names),
)


def checkpoint_version(checkpoint: dict[str, Any]) -> int:
    """The checkpoint's format (:class:`UnknownFormat` for one this mnistlab cannot read)."""
    entry = checkpoint.get(RUN_CONFIG_KEY)
    version = entry.get(FORMAT, 1) if isinstance(entry, dict) else 1
    return _check_version(version, CHECKPOINT_VERSION, "checkpoint")


def upgrade_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """``checkpoint`` (a dict from ``torch.load``, with ``hyper_parameters``) upgraded in place to today's
    format, and returned."""
    _apply(checkpoint, checkpoint_version(checkpoint), CHECKPOINT_STEPS)
    if isinstance(checkpoint.get(RUN_CONFIG_KEY), dict):
        checkpoint[RUN_CONFIG_KEY][FORMAT] = CHECKPOINT_VERSION
    return checkpoint


# -- run configs (a run dir's .hydra/, replayed by resume) ----------------------------------------------------
# Run dirs carry no format of their own; these tables are for runs recorded before record format 2 and change
# nothing for later ones, which never hold the old names.
# upgrades from record format 1: override keys that were model settings before they became the run's
RENAMED_OVERRIDES = {"model.compile": "speed.compile", "model.channels_last": "speed.channels_last"}
# upgrades from record format 1: recipe keys whose defaults have changed, and their value in runs recorded
# before the key existed (``...``: not known, the run's saved overrides alone decide); a resume continues the
# run's own recipe, not today's defaults
RECIPE_BEFORE: dict[str, Any] = {"trainer.max_epochs": ..., "loss.label_smoothing": 0.0, "ema.decay": None}
