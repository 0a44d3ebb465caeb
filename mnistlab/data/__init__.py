"""Datasets as in-memory DataModules, registered by name (``DATASETS``, ``create_datamodule``); index splits,
the batch-slicing loader and device-side augmentation. Nothing here knows a model, a task or a command.

Light to import: the DataModules (which bring Lightning) load when one of them, or the catalog, is first named.
"""

from mnistlab.core.lazy import lazy_exports

_WHERE = {
    "InMemoryDataModule": "base",
    "CIFAR10DataModule": "cifar",
    "MNISTDetectionDataModule": "detection",
    "MNISTDataModule": "mnist",
    "FashionMNISTDataModule": "mnist",
    "TinyImageNetDataModule": "hf",
    "HFDataModule": "hf",
    "FolderDataModule": "folder",
    "CSVDataModule": "folder",
    "DATASETS": "catalog",
    "create_datamodule": "catalog",
    "register_dataset": "registry",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_exports("mnistlab.data", _WHERE)
