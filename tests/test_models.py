"""Every architecture and every knob: output shapes, layers really present, init really applied. The models are
those of the registry (``mnistlab.models.MODELS``): a newly registered model is tested here without a change."""

from __future__ import annotations

import inspect
import itertools
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mnistlab.core.fields import ACTIVATIONS, INITS
from mnistlab.models import CNN, MLP, MODELS, model_task
from mnistlab.models.layers import ACTIVATION_MODULES

SHAPES = [(1, 28, 28), (3, 32, 32)]
CLASSIFIERS = [name for name in MODELS if model_task(name) == "classification"]
DETECTORS = [name for name in MODELS if model_task(name) == "detection"]
SMALL = {"resnet": {"channels": [8, 16], "blocks": [1, 1]}}  # sizes that keep a forward pass in milliseconds
NO_HIDDEN_LAYER = {"linear"}  # takes activation (so that sweeps span models) but has no layer to apply it to


def takes(kind: str, knob: str) -> bool:
    return knob in inspect.signature(MODELS.get(kind)).parameters


def with_knob(knob: str, kinds=None) -> list[str]:
    return [k for k in (kinds or CLASSIFIERS) if takes(k, knob)]


def build(kind: str, shape=(1, 28, 28), classes=10, **knobs) -> nn.Module:
    return MODELS.get(kind)(shape, classes, **{**SMALL.get(kind, {}), **knobs})


def test_the_registry_holds_the_known_models():
    assert {"linear", "mlp", "cnn", "resnet"} <= set(CLASSIFIERS) and "fasterrcnn" in DETECTORS


@pytest.mark.parametrize(
    ("kind", "shape", "norm", "activation"),
    itertools.product(with_knob("norm"), SHAPES, ["none", "batch"], list(ACTIVATIONS)),
)
def test_output_shape_for_every_knob(kind, shape, norm, activation):
    model = build(kind, shape, classes=7, norm=norm, activation=activation, dropout=0.3)
    out = model(torch.rand(4, *shape))
    assert out.shape == (4, 7)
    assert torch.isfinite(out).all()
    has_bn = any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in model.modules())
    assert has_bn == (norm == "batch")


@pytest.mark.parametrize("kind", [k for k in with_knob("activation") if k not in NO_HIDDEN_LAYER])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_activation_is_used(kind, activation):
    model = build(kind, activation=activation)
    assert any(type(m) is ACTIVATION_MODULES[activation] for m in model.modules())
    others = set(ACTIVATION_MODULES.values()) - {ACTIVATION_MODULES[activation]}
    assert not any(type(m) in others for m in model.modules())


@pytest.mark.parametrize("kind", with_knob("dropout"))
def test_dropout_modules(kind):
    dropout = nn.modules.dropout._DropoutNd  # Dropout and Dropout2d
    assert not any(isinstance(m, dropout) for m in build(kind, dropout=0.0).modules())
    drops = [m for m in build(kind, dropout=0.25).modules() if isinstance(m, dropout)]
    assert drops and all(m.p == 0.25 for m in drops)


def test_cnn_matches_the_seed_architecture():
    """cnn_bn_do: conv32-BN-ReLU-pool, conv64-BN-ReLU-pool, dropout, FC128, ReLU, dropout, FC10."""
    model = CNN((1, 28, 28), 10, channels=[32, 64], fc=[128], norm="batch", dropout=0.3)
    kinds = [type(m).__name__ for m in model.modules() if not isinstance(m, nn.Sequential | CNN)]
    assert kinds == [
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "BatchNorm2d",
        "ReLU",
        "MaxPool2d",
        "Flatten",
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    fc1 = model.head[2]
    assert (fc1.in_features, fc1.out_features) == (64 * 7 * 7, 128)
    assert model.features[0][0].bias is None  # BN follows: the conv bias is redundant
    assert CNN((1, 28, 28), 10, channels=[32, 64]).features[0][0].bias is not None


def test_cnn3_and_mlp_widths():
    cnn3 = CNN((1, 28, 28), 10, channels=[32, 64, 128])
    assert [b[0].out_channels for b in cnn3.features] == [32, 64, 128]
    assert cnn3.head[1].in_features == 128 * 3 * 3
    mlp = MLP((1, 28, 28), 10, hidden=[64, 128, 64], norm="batch")
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [64, 128, 64, 10]
    assert sum(p.numel() for p in MLP((1, 28, 28), 10).parameters()) == 784 * 128 + 128 + 128 * 10 + 10


def test_too_many_pooling_blocks_is_a_clear_error():
    with pytest.raises(ValueError, match="too many blocks for a 4×4 input"):
        CNN((1, 4, 4), 10, channels=[8, 8, 8])
    with pytest.raises(ValueError, match="too many blocks for a 28×28 input"):
        CNN((1, 28, 28), 10, channels=[8, 8, 8], kernel_size=5, padding="valid")  # 28 → 12 → 4 → 0


def test_valid_padding_and_a_kernel_per_block():
    """The small fast CNN: 28 → 24 → 12 (5×5 conv, pool) → 10 → 5 (3×3 conv, pool) → FC."""
    small = CNN((1, 28, 28), 10, channels=[24, 32], kernel_size=[5, 3], padding="valid", fc=[256], norm="batch")
    assert [b[0].kernel_size for b in small.features] == [(5, 5), (3, 3)]
    assert small.head[1].in_features == 32 * 5 * 5
    assert small(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    deep = CNN((1, 28, 28), 10, channels=[32, 64], convs_per_block=2, norm="batch")
    assert [type(m).__name__ for m in deep.features[0]] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["MaxPool2d"]
    assert deep.features[1][3].in_channels == 64 and deep.head[1].in_features == 64 * 7 * 7
    with pytest.raises(ValueError, match=r"model.kernel_size=\[5, 3, 3\] gives 3 sizes for 2 conv blocks"):
        CNN((1, 28, 28), 10, channels=[24, 32], kernel_size=[5, 3, 3])
    with pytest.raises(ValueError, match="needs odd sizes"):
        CNN((1, 28, 28), 10, kernel_size=[4, 3])
    assert len(CNN((1, 28, 28), 10, convs_per_block=None).features[0]) == 3  # null: one conv (conv, ReLU, pool)
    with pytest.raises(ValueError, match=r"model\.padding='full' is not one of same, valid"):
        CNN((1, 28, 28), 10, padding="full")


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


@pytest.mark.parametrize("kind", with_knob("init"))
def test_zeros_init(kind):
    model = build(kind, init="zeros")
    assert all(w.abs().sum() == 0 for w in _weights(model))
    assert all(m.bias is None or m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, nn.Linear))


def test_kaiming_init_has_kaiming_std():
    torch.manual_seed(0)
    model = MLP((1, 28, 28), 10, hidden=[512], init="kaiming")
    w = model.layers[1].weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.05)
    assert model.layers[1].bias.abs().sum() == 0


def test_xavier_init_stays_within_its_bound():
    torch.manual_seed(0)
    model = MLP((1, 28, 28), 10, hidden=[512], activation="tanh", init="xavier")
    w = model.layers[1].weight
    bound = (5 / 3) * math.sqrt(6 / (784 + 512))
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.95 * bound  # uniform over the whole range, not PyTorch's default


def test_default_init_differs_from_kaiming():
    torch.manual_seed(0)
    default = MLP((1, 28, 28), 10, hidden=[512]).layers[1].weight.std().item()
    assert default == pytest.approx(1 / math.sqrt(3 * 784), rel=0.05)  # PyTorch's kaiming_uniform(a=√5)


@pytest.mark.parametrize(
    ("knob", "value"),
    [("norm", "layer"), ("activation", "swish"), ("init", "orthogonal"), ("dropout", 1.0), ("dropout", -0.1)],
)
@pytest.mark.parametrize("kind", CLASSIFIERS)
def test_invalid_knob_names_the_key(kind, knob, value):
    if not takes(kind, knob):
        pytest.skip(f"{kind} has no {knob}")
    with pytest.raises(ValueError, match=f"model.{knob}="):
        build(kind, **{knob: value})


def test_inits_listed():
    assert INITS == ("default", "kaiming", "xavier", "zeros")


def test_every_declared_activation_has_a_module():
    assert tuple(ACTIVATION_MODULES) == ACTIVATIONS


def test_one_kernel_size_and_one_per_block_are_the_same_architecture(tmp_path):
    from helpers.data import write_checkpoint

    from mnistlab.tasks.checkpoint import check_same_architecture

    ckpt = write_checkpoint(tmp_path / "cnn.ckpt")  # channels [8, 16], kernel_size left at its default 3
    model = {"name": "cnn", "channels": [8, 16], "fc": [32], "norm": "batch"}
    check_same_architecture(str(ckpt), {**model, "kernel_size": [3, 3]})
    check_same_architecture(str(ckpt), {**model, "kernel_size": 3})
    with pytest.raises(ValueError, match=r"model.kernel_size=\[3, 3\] \(not \[3, 5\]\)"):
        check_same_architecture(str(ckpt), {**model, "kernel_size": [3, 5]})


@pytest.fixture(scope="module")
def model_presets() -> dict[str, dict]:
    """Each conf/model/*.yaml as the train config composes it: preset name → plain model settings."""
    from hydra import compose, initialize_config_dir

    from mnistlab.core.config import CONFIG_DIR, to_plain

    names = sorted(p.stem for p in (Path(CONFIG_DIR) / "model").glob("*.yaml"))
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return {name: to_plain(compose("train", [f"model={name}"]).model) for name in names}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_registered_model_builds_from_its_presets(name, model_presets):
    """Every preset of a registered model, at its config defaults, built by ``create_model`` for inputs of the
    shapes it trains on; a forward pass of the shape promised. Detectors through their task, in eval mode."""
    from mnistlab.models import create_model
    from mnistlab.tasks import task_class

    presets = {preset: model for preset, model in model_presets.items() if model["name"] == name}
    assert presets, f"the registered model {name!r} has no conf/model/*.yaml"
    torch.manual_seed(0)
    for preset, model in presets.items():
        if model_task(name) == "classification":
            for shape in SHAPES:
                net = create_model(model, shape, 7).eval()
                with torch.no_grad():
                    out = net(torch.rand(2, *shape))
                assert out.shape == (2, 7) and torch.isfinite(out).all(), preset
            continue
        shape = [1, 64, 64]  # a digit canvas (data=mnist_detection), small
        task = task_class(model)(
            model=model,
            optim={"name": "sgd", "lr": 0.1},
            scheduler={"name": "none"},
            input_shape=shape,
            num_classes=10,
            mean=[0.1],
            std=[0.3],
            classes=[str(i) for i in range(10)],
        ).eval()
        with torch.no_grad():
            detections = task(torch.rand(2, *shape))
        assert len(detections) == 2, preset
        for found in detections:
            assert {"boxes", "labels", "scores"} <= set(found)
            assert found["boxes"].shape[1:] == (4,) and len(found["labels"]) <= model["detections_per_image"]
            assert ((found["labels"] >= 0) & (found["labels"] < 10)).all()  # the background is not a digit
