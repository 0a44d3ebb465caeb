"""Multi-layer perceptron of any depth and width."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from mnistlab.models.layers import check_dropout, dense_block, init_weights
from mnistlab.models.registry import register_model


@register_model("mlp")
class MLP(nn.Module):
    """Flatten → [Linear → norm → activation → dropout] per hidden size → Linear to the classes.

    ``hidden=[128]`` is the reference scripts' SimpleNN; ``hidden=[64, 128, 64], norm=batch`` is the MLP of
    lightning-hydra-template.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        hidden: Sequence[int] = (128,),
        norm: str = "none",
        dropout: float = 0.0,
        activation: str = "relu",
        init: str = "default",
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for size in hidden:
            layers += dense_block(width, int(size), norm, activation)
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(size)
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)
        init_weights(self, init, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
