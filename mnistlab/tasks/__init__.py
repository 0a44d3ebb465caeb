"""Tasks: what a LightningModule does with a model's output. ``base.ImageTask`` holds what all share;
``classification`` and ``detection`` are siblings on it. ``TASKS`` picks one by the model's registered task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _classification() -> type:
    from mnistlab.tasks.classification import ClassificationTask

    return ClassificationTask


def _detection() -> type:
    from mnistlab.tasks.detection import DetectionTask

    return DetectionTask


# the model registry's task name → the LightningModule class (imported on first use: detection brings pycocotools)
TASKS: dict[str, Callable[[], type]] = {"classification": _classification, "detection": _detection}


def task_class(model: dict[str, Any] | None) -> type:
    """The task that trains the registered model ``model["name"]``."""
    from mnistlab.models import model_task

    return TASKS[model_task((model or {}).get("name"))]()


def check_names(model: dict[str, Any], optim: dict[str, Any], scheduler: dict[str, Any] | None) -> None:
    """Fail at once, before any data is read, on a model, optimizer or scheduler name no registry knows."""
    from mnistlab.models import model_task
    from mnistlab.models.registry import check_model_settings
    from mnistlab.tasks.optim import OPTIMIZERS, SCHEDULERS, is_none

    check_model_settings(model)
    if model_task(model.get("name")) not in TASKS:  # checked by name: the task's class brings Lightning
        raise ValueError(f"model {model.get('name')!r} is registered for an unknown task")
    OPTIMIZERS.get(optim.get("name"))
    if scheduler is not None and not is_none(scheduler.get("name")):
        SCHEDULERS.get(scheduler["name"])
