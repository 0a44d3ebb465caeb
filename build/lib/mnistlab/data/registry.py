"""The dataset registry: ``data.dataset`` in configs and checkpoints → a DataModule class of this folder.
Dataset modules register themselves with ``register_dataset``; ``mnistlab.data.catalog`` imports them all."""

from __future__ import annotations

from mnistlab.core.registry import Registry

DATASETS: Registry[type] = Registry("dataset", "data.dataset")
register_dataset = DATASETS.register
