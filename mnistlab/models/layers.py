"""The ablation knobs shared by every architecture: activation, normalization and weight init."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from mnistlab.core.fields import check

# the modules of the activation names declared in mnistlab.core.fields (a test keeps the two in step)
ACTIVATION_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module (in-place where the op allows it, to save memory)."""
    module = ACTIVATION_MODULES[check("model.activation", name)]
    return module(inplace=True) if name in ("relu", "leaky_relu", "elu", "selu") else module()


def make_norm(norm: str, num_features: int, dims: int) -> nn.Module | None:
    """BatchNorm over ``dims`` spatial dims (0 for vectors), or None when ``norm='none'``."""
    if check("model.norm", norm) == "none":
        return None
    return nn.BatchNorm2d(num_features) if dims == 2 else nn.BatchNorm1d(num_features)


_Gain = Literal["relu", "leaky_relu", "tanh", "sigmoid", "selu"]


def _gain_nonlinearity(activation: str) -> _Gain:
    # torch.nn.init knows these names; gelu/elu have no entry, relu is the closest
    names: dict[str, _Gain] = {"leaky_relu": "leaky_relu", "tanh": "tanh", "sigmoid": "sigmoid", "selu": "selu"}
    return names.get(activation, "relu")


def init_weights(module: nn.Module, scheme: str, activation: str = "relu") -> None:
    """Apply ``scheme`` to every conv and linear layer of ``module``; biases start at zero.

    ``default`` keeps PyTorch's own init. ``zeros`` is the reference scripts' cautionary example: every unit of a
    layer stays identical, so the network cannot learn beyond a linear model of the last layer.
    Normalization layers are left at weight 1, bias 0.
    """
    if check("model.init", scheme) == "default":
        return
    nonlinearity = _gain_nonlinearity(activation)
    for layer in module.modules():
        if not isinstance(layer, nn.Conv2d | nn.Linear):
            continue
        if scheme == "kaiming":
            if nonlinearity in ("relu", "leaky_relu"):
                nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity)
            else:  # kaiming's formula for other activations: scale by their recommended gain
                fan_in = nn.init._calculate_correct_fan(layer.weight, "fan_in")
                std = nn.init.calculate_gain(nonlinearity) / math.sqrt(fan_in)
                nn.init.normal_(layer.weight, 0.0, std)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(nonlinearity))
        else:
            nn.init.zeros_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)


def check_dropout(p: float) -> None:
    check("model.dropout", p)


def dense_block(in_features: int, out_features: int, norm: str, activation: str) -> list[nn.Module]:
    """Linear → (BatchNorm1d) → activation; the linear bias is dropped when a norm follows it."""
    bn = make_norm(norm, out_features, dims=0)
    layers: list[nn.Module] = [nn.Linear(in_features, out_features, bias=bn is None)]
    if bn is not None:
        layers.append(bn)
    layers.append(make_activation(activation))
    return layers


def normalize(images: Tensor, mean: Tensor, inv_std: Tensor) -> Tensor:
    """Images in [0, 1] → standardized by per-channel statistics (the train split's, kept with the model), as
    ``images * inv_std - mean * inv_std`` in one pass."""
    return torch.addcmul(-mean * inv_std, images, inv_std)
