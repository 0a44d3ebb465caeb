"""End to end on the real MNIST in ../shared/datasets (skipped when it is absent)."""

from __future__ import annotations

import json

import pytest
from helpers import REAL_DATA
from helpers.cli import run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(), reason=f"no real MNIST in {REAL_DATA}"),
]


@pytest.fixture(scope="module")
def sgd_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("sgd") / "run"
    run_cli(
        "mnistlab.train",
        "model=cnn_bn_do",
        "optim=sgd",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={run_dir}",
        data_dir=REAL_DATA,
        timeout=600,
    )
    return run_dir


def test_plain_sgd_cnn_reaches_97_percent_in_one_epoch(sgd_run):
    """The issue's check: `model=cnn_bn_do optim=sgd trainer.max_epochs=1` reaches test/acc >= 0.97."""
    metrics = json.loads((sgd_run / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["test/acc"] >= 0.97, metrics
    assert metrics["hparams"]["optim"] == "sgd"


def test_drawn_digits_are_predicted_like_the_originals(sgd_run, tmp_path):
    """A black-on-white 200×200 PNG made from an MNIST test digit gets the original's prediction through
    `python -m mnistlab.predict` (MNIST-style preprocessing), on 100 test digits."""
    from PIL import Image

    from mnistlab.data.mnist import load_split
    from mnistlab.serving.inference import Predictor

    ckpt = sgd_run / "checkpoints" / "best.ckpt"
    images, _ = load_split(REAL_DATA / "MNIST" / "raw", "test")
    originals = images[:100, 0].numpy()
    for i, original in enumerate(originals):
        Image.fromarray(255 - original).resize((200, 200), Image.Resampling.BICUBIC).save(tmp_path / f"{i:03d}.png")
    result = run_cli("mnistlab.predict", f"ckpt_path={ckpt}", f"inputs=[{tmp_path}]", "output=json")
    drawn = [r["label"] for r in json.loads(result.stdout)]
    expected = [p.label for p in Predictor(str(ckpt)).predict_arrays([(o / 255.0)[None] for o in originals])]
    agreement = sum(a == b for a, b in zip(drawn, expected, strict=True))
    assert agreement >= 97, f"{agreement}/100 drawn digits predicted like their originals"


def test_reduced_ablation_writes_the_sweep_report(tmp_path):
    """The analysis issue's check: a reduced `-m experiment=ablation` on real MNIST gives the report."""
    run_cli(
        "mnistlab.train",
        "-m",
        "experiment=ablation",
        "optim=sgd,adam",
        "model.norm=none,batch",
        "model.dropout=0.0",
        "model.activation=relu",
        "model.init=default",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=60",
        "callbacks.progress_bar=null",
        f"hydra.sweep.dir={tmp_path}",
        data_dir=REAL_DATA,
        timeout=600,
    )
    report = (tmp_path / "report.md").read_text()
    assert "4 of 4 runs completed, 0 failed" in report and "Factors varied: optim (lr), norm." in report
    assert "| optim (lr) | adam |" in report and "| norm | batch |" in report
    assert (tmp_path / "main_effects.png").is_file() and (tmp_path / "val_curves.png").is_file()
    run = json.loads((tmp_path / "0" / "metrics.json").read_text())
    assert run["test/samples"] == 10_000 and run["test/acc"] > 0.8
    assert run["baseline/majority_acc"] == pytest.approx(1135 / 10_000)  # digit 1: the train set's majority
    assert "## Per-class scores" in (tmp_path / "0" / "report.md").read_text()
