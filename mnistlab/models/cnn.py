"""Plain CNN: conv blocks then a fully connected head."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from mnistlab.core.errors import ConfigError
from mnistlab.core.fields import check
from mnistlab.models.layers import check_dropout, dense_block, init_weights, make_activation, make_norm
from mnistlab.models.registry import register_model


def conv_block(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    norm: str,
    activation: str,
    padding: str = "same",
    convs: int = 1,
) -> nn.Sequential:
    """``convs`` × (conv → norm → activation), then a 2×2 max-pool. ``same`` padding keeps the size, ``valid``
    shrinks it by kernel - 1 per conv.

    The conv bias is dropped when BatchNorm follows: BN's own shift makes it redundant, and its gradient
    is a full reduction over the feature map that costs ~15 % of a CPU step for nothing.
    """
    pad = kernel_size // 2 if padding == "same" else 0
    layers: list[nn.Module] = []
    for i in range(convs):
        bn = make_norm(norm, out_channels, dims=2)
        source = in_channels if i == 0 else out_channels
        layers.append(nn.Conv2d(source, out_channels, kernel_size, padding=pad, bias=bn is None))
        layers += [bn, make_activation(activation)] if bn is not None else [make_activation(activation)]
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def kernels_per_block(kernel_size: int | Sequence[int], blocks: int) -> list[int]:
    """One kernel size for every block, or one per block, as one size per block."""
    return [int(kernel_size)] * blocks if isinstance(kernel_size, int) else [int(k) for k in kernel_size]


@register_model("cnn")
class CNN(nn.Module):
    """``channels=[32, 64]``: conv32 → conv64 (each 3×3, norm, activation, 2×2 pool) → FC 128 → classes,
    with dropout before each FC layer when ``dropout > 0``. ``channels=[32, 64, 128]`` is the 3-block CNN.
    ``kernel_size`` is one size for every block or one per block; ``padding="valid"`` convolutions shrink the
    maps (``channels=[24, 32], kernel_size=[5, 3]``: 28 → 24 → 12 → 10 → 5, a quarter of the same-padded
    work). ``convs_per_block=2`` stacks two convs before each pool (VGG-style, the deeper CNN of
    ``experiment=best``).
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        fc: Sequence[int] = (128,),
        kernel_size: int | Sequence[int] = 3,
        padding: str = "same",
        convs_per_block: int = 1,
        norm: str = "none",
        dropout: float = 0.0,
        activation: str = "relu",
        init: str = "default",
    ) -> None:
        super().__init__()
        check_dropout(dropout)
        convs = int(check("model.convs_per_block", convs_per_block) or 1)
        padding = str(check("model.padding", padding) or "same")
        check("model.kernel_size", kernel_size)
        kernels = kernels_per_block(kernel_size, len(channels))
        if padding == "same" and any(k % 2 == 0 for k in kernels):
            raise ConfigError(
                f"model.kernel_size={kernel_size} with model.padding=same needs odd sizes (an even kernel cannot "
                "keep the map's size); use odd sizes or model.padding=valid"
            )
        if len(kernels) != len(channels):
            raise ConfigError(
                f"model.kernel_size={list(kernels)} gives {len(kernels)} sizes for {len(channels)} conv blocks "
                f"(model.channels={list(channels)}): give one size, or one per block"
            )
        in_channels, height, width = input_shape
        blocks = []
        for out_channels, kernel in zip(channels, kernels, strict=True):
            shrink = convs * (kernel - 1) if padding == "valid" else 0
            if min(height, width) - shrink < 2:
                raise ConfigError(
                    f"model.channels={list(channels)} with model.kernel_size={list(kernels)} and "
                    f"model.padding={padding} has too many blocks for a {input_shape[1]}×{input_shape[2]} input"
                )
            blocks.append(conv_block(in_channels, int(out_channels), kernel, norm, activation, padding, convs))
            in_channels, height, width = int(out_channels), (height - shrink) // 2, (width - shrink) // 2
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Flatten()]
        features = in_channels * height * width
        for size in fc:
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            # the FC head of the reference scripts has no norm layer: only the conv blocks carry BatchNorm
            head += dense_block(features, int(size), "none", activation)
            features = int(size)
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(features, num_classes))
        self.head = nn.Sequential(*head)
        init_weights(self, init, activation)

    @staticmethod
    def canonical_settings(settings: dict) -> dict:
        """``kernel_size=3`` and ``kernel_size=[3, 3]`` build the same net: compared as one size per block."""
        kernel, channels = settings.get("kernel_size"), settings.get("channels")
        if isinstance(kernel, int) and isinstance(channels, list | tuple):
            return {**settings, "kernel_size": kernels_per_block(kernel, len(channels))}
        return settings

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
