"""DataModules, index splits and device-side augmentation."""

from mnistlab.data.mnist import MNISTDataModule

__all__ = ["MNISTDataModule"]
