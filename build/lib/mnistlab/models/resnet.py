"""ResNet of basic blocks with Dropout2d inside each block (the Tiny-ImageNet study)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mnistlab.models.layers import check_dropout, init_weights, make_activation, make_norm
from mnistlab.models.registry import register_model


def _conv_norm(in_channels: int, out_channels: int, kernel: int, stride: int, norm: str) -> list[nn.Module]:
    bn = make_norm(norm, out_channels, dims=2)
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=bn is None)
    return [conv] if bn is None else [conv, bn]


class Subsample(nn.Module):
    """Every ``stride``-th pixel: with a 1×1 conv after it, the same as a strided 1×1 conv.

    torch 2.14.1's CPU backward of a strided 1×1 conv in channels-last memory corrupts the heap (double free);
    this form computes the same function and avoids that kernel.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, :: self.stride, :: self.stride]


class BasicBlock(nn.Module):
    """conv3×3-norm-act-Dropout2d(p)-conv3×3-norm, plus the shortcut (1×1 conv-norm when the shape changes),
    then the activation."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, norm: str, dropout: float, activation: str
    ) -> None:
        super().__init__()
        layers = [*_conv_norm(in_channels, out_channels, 3, stride, norm), make_activation(activation)]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers += _conv_norm(out_channels, out_channels, 3, 1, norm)
        self.body = nn.Sequential(*layers)
        same = stride == 1 and in_channels == out_channels
        if same:
            self.shortcut: nn.Module = nn.Identity()
        else:
            subsample = [Subsample(stride)] if stride > 1 else []
            self.shortcut = nn.Sequential(*subsample, *_conv_norm(in_channels, out_channels, 1, 1, norm))
        self.act = make_activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.shortcut(x))


@register_model("resnet")
class ResNet(nn.Module):
    """Stem conv → stages (``channels[i]`` wide, ``blocks[i]`` blocks; every stage after the first halves
    the resolution) → global average pooling → linear head. Any input size works (1×28×28 included)."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: Sequence[int] = (64, 128, 256),
        blocks: Sequence[int] = (2, 2, 2),
        norm: str = "batch",
        dropout: float = 0.0,
        activation: str = "relu",
        init: str = "default",
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        if len(channels) != len(blocks) or not channels:
            raise ValueError(
                f"model.channels={list(channels)} and model.blocks={list(blocks)} must have one entry per stage"
            )
        stem = [*_conv_norm(input_shape[0], int(channels[0]), 3, 1, norm), make_activation(activation)]
        stages: list[nn.Module] = [nn.Sequential(*stem)]
        width = int(channels[0])
        for index, (out_channels, count) in enumerate(zip(channels, blocks, strict=True)):
            for block in range(int(count)):
                stride = 2 if index > 0 and block == 0 else 1
                stages.append(BasicBlock(width, int(out_channels), stride, norm, dropout, activation))
                width = int(out_channels)
        self.features = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
        init_weights(self, init, activation)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
