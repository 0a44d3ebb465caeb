"""Architectures as plain ``nn.Module``s. Each takes ``input_shape`` and ``num_classes`` (handed over by
the DataModule) plus the shared knobs ``norm``, ``dropout``, ``activation`` and ``init``."""

from mnistlab.models.cnn import CNN
from mnistlab.models.detection import FasterRCNN
from mnistlab.models.linear import SoftmaxRegression
from mnistlab.models.mlp import MLP
from mnistlab.models.resnet import ResNet

__all__ = ["CNN", "MLP", "FasterRCNN", "ResNet", "SoftmaxRegression"]
