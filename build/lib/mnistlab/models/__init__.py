"""Architectures as plain ``nn.Module``s, registered by name (``MODELS``). Each takes ``input_shape`` and
``num_classes`` (handed over by the DataModule) plus the shared knobs ``norm``, ``dropout``, ``activation``
and ``init``. Models know nothing of datasets, tasks or commands."""

from mnistlab.models.cnn import CNN
from mnistlab.models.detection import FasterRCNN
from mnistlab.models.linear import SoftmaxRegression
from mnistlab.models.mlp import MLP
from mnistlab.models.registry import MODELS, create_model, model_task, register_model
from mnistlab.models.resnet import ResNet

__all__ = [
    "CNN",
    "MLP",
    "MODELS",
    "FasterRCNN",
    "ResNet",
    "SoftmaxRegression",
    "create_model",
    "model_task",
    "register_model",
]
