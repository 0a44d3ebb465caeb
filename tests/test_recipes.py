"""The recipes: presets compose to the networks they promise, and an EMA of the weights is what validation,
checkpoints, the test and evaluation see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers.cli import run_cli
from hydra import compose, initialize_config_dir

from mnistlab.core.config import CONFIG_DIR, to_plain
from mnistlab.core.fields import validate
from mnistlab.models.registry import create_model
from mnistlab.training.callbacks.weight_average import WeightAverage, ema_with_warmup


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.mark.parametrize(
    ("preset", "params", "epochs"),
    [
        ("fast", 215_250, 1),  # convs 24·25 + 32·24·9 (no bias), BN 2·(24 + 32), FC 800·256 + 256, 256·10 + 10
        ("best", None, 40),
        ("fashion", None, 24),
        ("fashion_gpu", None, 60),
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
    def step(n: int) -> torch.Tensor:
        averaged = [torch.zeros(3)]
        ema_with_warmup(averaged, [torch.ones(3)], torch.tensor(n), decay=0.999)
        return averaged[0]

    assert torch.allclose(step(1), torch.full((3,), 1 - 2 / 11))  # (1 + 1) / (10 + 1): follows fast
    assert torch.allclose(step(100_000), torch.full((3,), 0.001))
    counter = [torch.tensor(5)]
    ema_with_warmup(counter, [torch.tensor(9)], torch.tensor(50), decay=0.999)
    assert counter[0] == 9


def test_the_average_is_kept_on_the_training_device():
    """Lightning sets callbacks up before the module is moved: the average must follow the strategy's device
    (``meta`` stands in for a GPU here), not stay where the module was."""
    from types import SimpleNamespace

    import lightning as L

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

    trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("meta")))
    callback = WeightAverage()
    callback.setup(trainer, Module(), "fit")
    assert {p.device.type for p in callback._average_model.parameters()} == {"meta"}


def test_the_test_and_evaluate_use_the_averaged_weights(cnn_run, tiny_data, tmp_path):
    """The shared run of the default recipe: EMA (decay 0.999, warmed up over its 32 steps) and smoothing 0.1."""
    run = cnn_run
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    averaged, current = best["state_dict"], best["current_model_state"]
    key = next(k for k in averaged if k.startswith("net.") and k.endswith("weight"))
    assert not torch.equal(averaged[key], current[key])  # the checkpoint's weights are the average
    best_score = averaged["val_acc_best.max_value"]  # states that are not weights are the run's own
    assert best_score == current["val_acc_best.max_value"] and best_score > 0
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


def test_recipe_knobs_are_checked_before_anything_is_read(command_error, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tmp_path / "no data here"))  # nothing is read: none is needed
    message = command_error("train", "ema.decay=1.5", f"hydra.run.dir={tmp_path / 'run'}")
    assert message.startswith("ema.decay=1.5 must be in (0, 1), e.g. 0.999 (null: off)")
    message = command_error("train", "model.convs_per_block=0", f"hydra.run.dir={tmp_path / 'run'}")
    assert message.startswith("model.convs_per_block=0 must be a positive integer")


def test_random_erasing_blanks_a_rectangle_of_every_image():
    from mnistlab.data.augment import build_augmentation

    torch.manual_seed(0)
    erase = build_augmentation({"erasing": 1.0})
    images = erase(torch.ones(8, 1, 28, 28))
    blanked = (images == 0).flatten(1).float().mean(1)
    assert bool(((blanked >= 0.02) & (blanked <= 0.34)).all())  # 2-33 % of each image, as documented
    assert build_augmentation({"erasing": 0.0}) is None


def test_a_resume_keeps_the_recipe_its_run_recorded(tmp_path):
    from mnistlab.core.config import recipe_pins

    record = tmp_path / ".hydra" / "config.yaml"
    record.parent.mkdir()
    record.write_text("trainer:\n  max_epochs: 12\nseed: 1\n")  # a run from before smoothing and EMA existed
    assert recipe_pins(tmp_path) == ["trainer.max_epochs=12", "loss.label_smoothing=0.0", "ema.decay=null"]
    record.write_text("trainer:\n  max_epochs: 18\nloss:\n  label_smoothing: 0.1\nema:\n  decay: 0.999\n")
    assert recipe_pins(tmp_path) == ["trainer.max_epochs=18", "loss.label_smoothing=0.1", "ema.decay=0.999"]
    record.write_text("trainer:\n  max_epochs: ${oc.env:HOME}\n")  # data, never resolved: not taken
    assert recipe_pins(tmp_path) == ["loss.label_smoothing=0.0", "ema.decay=null"]


def test_a_resume_replays_every_recipe_key_of_train_yaml():
    from omegaconf import OmegaConf

    from mnistlab.core.config import REPLAYED_ROOTS

    train = OmegaConf.load(Path(CONFIG_DIR) / "train.yaml")
    # per command, not recipe; hydra's own settings are never replayed
    not_replayed = {"defaults", "resume", "rerun", "ckpt_path", "search", "skip_completed", "hydra"}
    assert set(train) - not_replayed <= REPLAYED_ROOTS
