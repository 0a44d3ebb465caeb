"""Every preset of conf/experiment/ and conf/debug/ composes, validates and builds (lightning-hydra-template's
``experiment=glob(*)``), in this process and without training: its data module (constructed, nothing read), its
task with the registered model for the data's input shape and classes, and a forward pass. A sweep preset is
checked at every value of each axis of its ``hydra.sweeper.params`` (one axis at a time, the others at the
preset's own choice). A new preset file is picked up by the glob."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from mnistlab.core.config import CONFIG_DIR, to_plain
from mnistlab.core.fields import validate

GROUPS = ("experiment", "debug")
PRESETS = [f"{group}={p.stem}" for group in GROUPS for p in sorted((Path(CONFIG_DIR) / group).glob("*.yaml"))]


def sweep_points(preset: str) -> list[list[str]]:
    """The preset alone, then one override per value of each swept axis."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    points: list[list[str]] = [[]]
    group, _, name = preset.partition("=")
    params = OmegaConf.load(Path(CONFIG_DIR) / group / f"{name}.yaml").get("hydra", {}).get("sweeper", {})
    params = params.get("params") or {}
    if not params and "defaults" in OmegaConf.load(Path(CONFIG_DIR) / group / f"{name}.yaml"):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):  # swept axes of a preset it extends
            params = compose("train", [preset], return_hydra_config=True).hydra.sweeper.get("params") or {}
    parser = OverridesParser.create()
    for key, values in params.items():
        (override,) = parser.parse_overrides([f"{key}={values}"])
        points += [[f"{key}={value}"] for value in override.sweep_string_iterator()]
    return points


def _declared_classes(datamodule, monkeypatch) -> int:
    """The class count a dataset declares; a dataset that learns its classes from its files (Tiny-ImageNet) is
    not downloaded here: any count builds the same layers but the last, so a stand-in is used."""
    from mnistlab.core.errors import MnistlabError

    def nothing_to_read() -> None:
        raise MnistlabError("no data is read in this test")

    monkeypatch.setattr(datamodule, "prepare_data", nothing_to_read)
    try:
        return datamodule.num_classes
    except (MnistlabError, OSError):
        return 200


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_validates_and_builds(preset, tiny_data, monkeypatch):
    from mnistlab.data import create_datamodule
    from mnistlab.models import model_task
    from mnistlab.tasks import check_names, task_class

    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tiny_data))
    points = sweep_points(preset)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        configs = [(point, compose("train", [preset, *point])) for point in points]
    built = set()
    for point, cfg in configs:
        where = " ".join([preset, *point])
        validate(cfg)
        model, data = to_plain(cfg.model), to_plain(cfg.data)
        check_names(model, to_plain(cfg.optim), to_plain(cfg.scheduler))
        datamodule = create_datamodule(data)  # its settings checked; nothing read before setup()
        shape, classes = list(datamodule.input_shape), _declared_classes(datamodule, monkeypatch)
        key = repr((model, shape, classes, data.get("task")))
        if key in built:  # a swept value of the data or optimizer: the same network
            continue
        built.add(key)
        task = task_class(model)(
            model=model,
            optim=to_plain(cfg.optim),
            scheduler=to_plain(cfg.scheduler),
            input_shape=shape,
            num_classes=classes,
            mean=[0.5] * shape[0],
            std=[0.25] * shape[0],
            classes=[str(i) for i in range(classes)],
        ).eval()
        with torch.no_grad():
            out = task(torch.rand(2, *shape))
        if model_task(model["name"]) == "classification":
            assert out.shape == (2, classes), where
        else:
            assert len(out) == 2 and {"boxes", "labels", "scores"} <= set(out[0]), where


def test_the_glob_finds_the_presets():
    assert {"experiment=fast", "experiment=ablation", "experiment=cnn_vs_rcnn", "debug=overfit"} <= set(PRESETS)
    assert len(sweep_points("experiment=ablation")) == 1 + 3 + 2 + 2 + 3 + 2
    assert ["model=fasterrcnn"] in sweep_points("experiment=cnn_vs_rcnn")
    assert ["model.blocks=[3,3,3]"] in sweep_points("experiment=tiny_imagenet_grid")  # from the preset it extends
