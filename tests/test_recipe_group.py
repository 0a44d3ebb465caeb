"""The recipe group (conf/recipe/: default, plain): every preset composes to the label smoothing and EMA it had
when the block was pasted into each, a resume keeps a run's own recipe, every preset says what it is for, and
a setting a model ignores refuses another value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from mnistlab.core.config import CONFIG_DIR, expand_resume
from mnistlab.core.errors import ConfigError
from mnistlab.core.fields import FIELDS, check_used, validate

CONF = Path(CONFIG_DIR)
DEFAULT = (0.1, 0.999)  # loss.label_smoothing, ema.decay
PLAIN = (0.0, None)
# what each experiment composed to before the recipe group existed (loss/ema pasted into the presets), and what
# the presets made since compose to
BEFORE = {
    None: DEFAULT,
    "ablation": PLAIN,
    "best": DEFAULT,
    "cnn_vs_rcnn": PLAIN,
    "fashion": DEFAULT,
    "fashion_gpu": DEFAULT,
    "fast": DEFAULT,
    "fast995": DEFAULT,
    "kfold": DEFAULT,
    "lr_wd_grid": DEFAULT,
    "permuted": PLAIN,
    "tiny_imagenet_grid": PLAIN,
    "tiny_imagenet_resnet": PLAIN,
}


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def recipe_of(cfg) -> tuple[float, float | None]:
    return cfg.loss.label_smoothing, cfg.ema.decay


def test_the_table_covers_every_experiment():
    assert set(BEFORE) - {None} == {p.stem for p in (CONF / "experiment").glob("*.yaml")}


@pytest.mark.parametrize("experiment", list(BEFORE))
def test_every_experiment_keeps_its_recipe(experiment):
    overrides = [f"experiment={experiment}"] if experiment else []
    cfg = composed(*overrides)
    assert recipe_of(cfg) == BEFORE[experiment]
    assert cfg.hydra.runtime.choices.recipe == ("default" if BEFORE[experiment] == DEFAULT else "plain")
    assert recipe_of(composed(*overrides, "debug=overfit")) == PLAIN  # the overfit check turns both off
    assert recipe_of(composed(*overrides, "debug=fast_dev_run")) == BEFORE[experiment]


@pytest.mark.parametrize("experiment", [None, "best", "ablation"])
def test_the_command_line_chooses_the_recipe(experiment):
    overrides = [f"experiment={experiment}"] if experiment else []
    assert recipe_of(composed(*overrides, "recipe=plain")) == PLAIN
    assert recipe_of(composed(*overrides, "recipe=default")) == DEFAULT
    assert recipe_of(composed(*overrides, "recipe=plain", "loss.label_smoothing=0.05")) == (0.05, None)


def test_only_the_recipe_group_sets_the_recipe():
    """No preset pastes loss.* or ema.* values again: they choose ``override /recipe: …``."""
    setters = sorted(
        str(p.relative_to(CONF))
        for p in CONF.rglob("*.yaml")
        if re.search(r"^\s*(label_smoothing|decay):\s*(?!\?\?\?)\S", p.read_text(), re.MULTILINE)
    )
    assert setters == ["recipe/default.yaml", "recipe/plain.yaml"]


def test_every_preset_opens_with_what_it_is_for():
    for path in sorted(CONF.rglob("*.yaml")):
        lines = path.read_text().splitlines()
        first = lines[1] if lines[0].startswith("# @package") else lines[0]
        assert re.match(r"# \S", first), f"{path.relative_to(CONF)} opens without a comment saying what it is for"


def test_the_base_dataset_lists_every_augment_key():
    keys = [k.removeprefix("data.augment.") for k in FIELDS if k.startswith("data.augment.")]
    text = (CONF / "data" / "_base.yaml").read_text()
    comment = " ".join(line for line in text.splitlines() if line.startswith("#"))
    listed = re.search(r"any of the keys\s*#?\s*([a-z_, #]+?)\s*#?\s*\(", comment)
    assert listed, "data/_base.yaml no longer lists the augment keys"
    assert [k.strip() for k in listed.group(1).replace("#", "").split(",")] == keys


def test_a_setting_the_linear_model_ignores_refuses_another_value():
    with pytest.raises(ConfigError, match=r"^model.activation='tanh' does nothing for model.name='linear'"):
        validate(composed("model=linear", "model.activation=tanh"))
    validate(composed("model=linear"))  # relu: the value it allows
    validate(composed("model=mlp", "model.activation=tanh"))  # used there
    check_used({"name": "linear"})  # left out: fine


def _run_dir(root: Path, overrides: list[str], config: str) -> Path:
    (root / ".hydra").mkdir(parents=True)
    (root / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (root / ".hydra" / "config.yaml").write_text(config)
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "last.ckpt").write_bytes(b"")
    return root


def resumed(run_dir: Path, *new: str):
    argv = expand_resume(["mnistlab-train", f"resume={run_dir}", *new])
    return composed(*(a for a in argv[1:] if not a.startswith("hydra.")))


def test_a_resume_keeps_the_recipe_of_a_run_from_before_the_group(tmp_path):
    default_run = _run_dir(
        tmp_path / "a",
        ["trainer.max_epochs=3"],
        "trainer:\n  max_epochs: 3\nloss:\n  label_smoothing: 0.1\nema:\n  decay: 0.999\n",
    )
    assert recipe_of(resumed(default_run)) == DEFAULT
    ablation_run = _run_dir(
        tmp_path / "b",
        ["experiment=ablation"],
        "trainer:\n  max_epochs: 3\nloss:\n  label_smoothing: 0.0\nema:\n  decay: null\n",
    )
    assert recipe_of(resumed(ablation_run)) == PLAIN
    older = _run_dir(tmp_path / "c", ["seed=1"], "trainer:\n  max_epochs: 12\n")  # before smoothing and EMA
    assert recipe_of(resumed(older, "trainer.max_epochs=14")) == PLAIN


def test_a_resume_replays_the_recipe_choice(tmp_path, capsys):
    run = _run_dir(
        tmp_path / "a",
        ["recipe=plain"],
        "trainer:\n  max_epochs: 3\nloss:\n  label_smoothing: 0.0\nema:\n  decay: null\n",
    )
    cfg = resumed(run)
    assert recipe_of(cfg) == PLAIN and cfg.hydra.runtime.choices.recipe == "plain"
    assert "does not replay" not in capsys.readouterr().err
