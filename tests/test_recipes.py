"""The recipes: presets compose to the networks they promise, and an EMA of the weights is what validation,
checkpoints, the test and evaluation see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import FAST, run_cli
from hydra import compose, initialize_config_dir

from mnistlab.core.config import CONFIG_DIR, to_plain
from mnistlab.core.fields import validate
from mnistlab.models.registry import create_model
from mnistlab.training.callbacks.weight_average import ema_with_warmup


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize(
    ("preset", "params", "epochs"),
    [
        ("fast", 215_250, 1),  # convs 24·25 + 32·24·9 (no bias), BN 2·(24 + 32), FC 800·256 + 256, 256·10 + 10
        ("best", None, 40),
        ("fashion", None, 17),
    ],
)
def test_presets_compose_validate_and_build(preset, params, epochs):
    cfg = composed(f"experiment={preset}")
    validate(cfg)
    model = to_plain(cfg.model)
    shape = (1, 28, 28)
    net = create_model(model, shape, 10)
    assert net(torch.zeros(2, *shape)).shape == (2, 10)
    if params is not None:
        assert sum(p.numel() for p in net.parameters()) == params
    assert cfg.trainer.max_epochs == epochs


def test_the_default_recipe_and_the_course_matrix():
    default = composed()
    assert default.ema.decay == 0.999 and default.loss.label_smoothing == 0.1
    ablation = composed("experiment=ablation")  # the course's matrix stays the plain course setup
    assert ablation.ema.decay is None and ablation.loss.label_smoothing == 0.0


def test_ema_decay_warms_up_and_leaves_integer_buffers_alone():
    averaged, current = torch.zeros(3), torch.ones(3)
    early = ema_with_warmup(averaged, current, torch.tensor(1), decay=0.999)  # (1 + 1) / (10 + 1): follows fast
    assert torch.allclose(early, torch.full((3,), 1 - 2 / 11))
    late = ema_with_warmup(averaged, current, torch.tensor(100_000), decay=0.999)
    assert torch.allclose(late, torch.full((3,), 0.001))
    counter = torch.tensor(5)
    assert ema_with_warmup(counter, torch.tensor(9), torch.tensor(50), decay=0.999) == 9


def test_the_test_and_evaluate_use_the_averaged_weights(tiny_data, tmp_path):
    run = tmp_path / "run"
    run_cli(
        "mnistlab.train",
        *FAST,
        "ema.decay=0.9",
        "loss.label_smoothing=0.1",
        f"hydra.run.dir={run}",
        data_dir=tiny_data,
    )
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    averaged, current = best["state_dict"], best["current_model_state"]
    key = next(k for k in averaged if k.startswith("net.") and k.endswith("weight"))
    assert not torch.equal(averaged[key], current[key])  # the checkpoint's weights are the average
    record = json.loads((run / "metrics.json").read_text())
    evaluated = run_cli(
        "mnistlab.evaluate",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        f"hydra.run.dir={tmp_path / 'ev'}",
        data_dir=tiny_data,
    )
    assert f"test/acc: {record['test/acc']:.4f}" in evaluated.stdout + evaluated.stderr
    hparams = best["hyper_parameters"]
    assert hparams["label_smoothing"] == 0.1


def test_recipe_knobs_are_checked_before_anything_is_read(tmp_path: Path):
    result = run_cli("mnistlab.train", "ema.decay=1.5", f"hydra.run.dir={tmp_path}", check=False)
    assert result.returncode == 2
    assert "error: ema.decay=1.5 must be in (0, 1), e.g. 0.999 (null: off)" in result.stderr
    result = run_cli("mnistlab.train", "model.convs_per_block=0", f"hydra.run.dir={tmp_path}", check=False)
    assert "error: model.convs_per_block=0 must be a positive integer" in result.stderr
