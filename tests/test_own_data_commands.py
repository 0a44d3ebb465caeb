"""The same 210 images as a folder, a CSV and a Hugging Face dataset, each through the commands a user runs:
train, evaluate, predict and serve (the commands' own Hydra composition through ``mnistlab.api``, in this
process; each command's process is tested in tests/test_catalogue.py)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import needs
from test_own_models import write_own_images

CLASSES = ("bleu", "rouge vif", "vert")


def as_csv(pictures: Path) -> Path:
    """``labels.csv`` beside the class folders: relative paths and class names."""
    target = pictures / "labels.csv"
    with target.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for name in CLASSES:
            for file in sorted((pictures / name).iterdir()):
                writer.writerow([f"{name}/{file.name}", name])
    return target


def as_hugging_face(pictures: Path, target: Path) -> Path:
    """A ``save_to_disk`` copy with an Image column and a ClassLabel column."""
    import datasets

    files = [(file, label) for label, name in enumerate(CLASSES) for file in sorted((pictures / name).iterdir())]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})
    table = datasets.Dataset.from_dict(
        {"image": [str(f) for f, _ in files], "label": [label for _, label in files]}, features=features
    )
    datasets.DatasetDict({"train": table}).save_to_disk(str(target))
    return target


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own") / "pictures"
    write_own_images(root)
    return root


@needs("fastapi", "multipart", "fastapi_offline", "datasets")
@pytest.mark.parametrize("kind", ["folder", "csv", "hf"])
def test_each_way_of_giving_images_trains_evaluates_predicts_and_serves(kind, pictures, tmp_path):
    from fastapi.testclient import TestClient

    from mnistlab import api
    from mnistlab.serving.server import build_app

    source = {
        "folder": lambda: f"data.root={pictures}",
        "csv": lambda: f"data.csv={as_csv(pictures)}",
        "hf": lambda: f"data.hf_path={as_hugging_face(pictures, tmp_path / 'hf')}",
    }[kind]()
    run, data_dir = tmp_path / "run", tmp_path / "data"
    common = [f"paths.data_dir={data_dir}", "trainer.enable_model_summary=false"]
    metrics = api.train(
        [
            f"data={kind}",
            source,
            "trainer.max_epochs=1",
            "data.batch_size=16",
            "callbacks.progress_bar=null",
            "logger=csv",
            *common,
            f"hydra.run.dir={run}",
        ]
    )
    assert metrics["sanity/batch_shape"] == [16, 3, 32, 32]
    assert metrics["test/acc"] > 0.6  # colour tells the classes apart: far above chance (1/3) after one epoch
    ckpt = run / "checkpoints" / "best.ckpt"

    evaluation = api.evaluate([f"ckpt_path={ckpt}", *common[:1], f"hydra.run.dir={tmp_path / 'eval'}"])
    assert evaluation["test/acc"] == pytest.approx(metrics["test/acc"])  # the same test split, found again

    results = api.predict([f"ckpt_path={ckpt}", f"inputs={pictures / 'rouge vif'}", "output=json"])
    assert {r["label"] for r in results} <= set(CLASSES) and set(results[0]["probabilities"]) == set(CLASSES)
    assert sum(r["label"] == "rouge vif" for r in results) > 0.6 * len(results)

    client = TestClient(api._hydra("serve", build_app, [f"ckpt_path={ckpt}"]).return_value)
    assert client.get("/health").json()["preprocess"] == "resize"
    answer = client.post(
        "/api/v1/predict", files={"file": ("x.png", (pictures / "vert" / "000.png").read_bytes(), "image/png")}
    ).json()
    assert answer["label"] == "vert"


def test_a_checkpoint_is_never_tested_on_other_classes(pictures, tmp_path):
    """A class folder added or renamed since training: evaluate says so in one line instead of scoring the model
    against other labels."""
    import shutil

    from helpers.inprocess import command_error

    from mnistlab import api

    copy, run, data_dir = tmp_path / "pictures", tmp_path / "run", tmp_path / "data"
    shutil.copytree(pictures, copy, ignore=shutil.ignore_patterns("*.csv"))
    common = [f"paths.data_dir={data_dir}", "trainer.enable_model_summary=false"]
    train = ["data=folder", f"data.root={copy}", "trainer.max_epochs=1", "test=false", "callbacks.progress_bar=null"]
    api.train([*train, "logger=csv", *common, f"hydra.run.dir={run}"])
    ckpt = run / "checkpoints" / "best.ckpt"
    shutil.copytree(copy / "vert", copy / "jaune")
    assert "was trained on 3 classes, the data now has 4 (new: jaune)" in command_error(
        "evaluate", [f"ckpt_path={ckpt}", common[0], f"hydra.run.dir={tmp_path / 'eval'}"]
    )
    shutil.rmtree(copy / "jaune")
    (copy / "vert").rename(copy / "azur")  # sorts first now: the same number of classes, in another order
    message = command_error("evaluate", [f"ckpt_path={ckpt}", common[0], f"hydra.run.dir={tmp_path / 'eval2'}"])
    assert "new: azur; gone: vert" in message
