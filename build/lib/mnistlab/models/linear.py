"""Softmax regression: one linear layer on the flattened image."""

from __future__ import annotations

import math

from torch import Tensor, nn

from mnistlab.models.layers import check_dropout, init_weights, make_activation, make_norm
from mnistlab.models.registry import register_model


@register_model("linear")
class SoftmaxRegression(nn.Module):
    """Logits ``z = W x + b``. ``norm`` normalizes the input pixels; ``dropout`` drops input pixels;
    ``activation`` has no hidden layer to act on and is only validated, so sweeps can include it."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        norm: str = "none",
        dropout: float = 0.0,
        activation: str = "relu",
        init: str = "default",
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        make_activation(activation)
        in_features = math.prod(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        bn = make_norm(norm, in_features, dims=0)
        if bn is not None:
            layers.append(bn)
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(in_features, num_classes))
        self.layers = nn.Sequential(*layers)
        init_weights(self, init, activation="sigmoid")  # gain 1: a linear model

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
