"""DataModules, index splits and device-side augmentation."""

from mnistlab.data.base import InMemoryDataModule
from mnistlab.data.cifar import CIFAR10DataModule
from mnistlab.data.mnist import MNISTDataModule
from mnistlab.data.tiny_imagenet import TinyImageNetDataModule

__all__ = ["CIFAR10DataModule", "InMemoryDataModule", "MNISTDataModule", "TinyImageNetDataModule"]
