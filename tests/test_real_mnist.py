"""End to end on the real MNIST in ../shared/datasets (skipped when it is absent)."""

from __future__ import annotations

import json

import pytest
from conftest import REAL_DATA, run_cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(), reason=f"no real MNIST in {REAL_DATA}"),
]


def test_plain_sgd_cnn_reaches_97_percent_in_one_epoch(tmp_path):
    """The issue's check: `model=cnn_bn_do optim=sgd trainer.max_epochs=1` reaches test/acc >= 0.97."""
    run_cli(
        "mnistlab.train",
        "model=cnn_bn_do",
        "optim=sgd",
        "trainer.max_epochs=1",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={tmp_path}",
        data_dir=REAL_DATA,
        timeout=600,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert metrics["test/acc"] >= 0.97, metrics
    assert metrics["hparams"]["optim"] == "sgd"
