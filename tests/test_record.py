"""The run record and the compatibility layer: records and checkpoints written by mnistlab 0.1.0 (before records
and checkpoints named their format; files in tests/data/compat/, made by its ``mnistlab.train`` with a one-unit
MLP) are still read, and no status or main metric key is spelled outside the record module."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers import REPO
from helpers.cli import run_cli

from mnistlab.core.compat import CHECKPOINT_STEPS, CHECKPOINT_VERSION, RECORD_STEPS, checkpoint_version
from mnistlab.core.errors import ConfigError
from mnistlab.core.record import (
    FORMAT,
    NUMBERS,
    RANK_BY,
    RECORD_VERSION,
    STATUS,
    TEST_ACC,
    Status,
    read_record,
    write_record,
)

OLD = Path(__file__).parent / "data" / "compat" / "main-0.1.0"


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    """A copy of the completed 0.1.0 run dir (metrics.json, .hydra/, best.ckpt)."""
    return Path(shutil.copytree(OLD / "completed", tmp_path / "run"))


def test_records_written_by_0_1_0_are_read(old_run):
    record = read_record(old_run)
    assert "format" not in json.loads((old_run / "metrics.json").read_text())
    assert record[FORMAT] == RECORD_VERSION and record[STATUS] == Status.COMPLETED
    assert isinstance(record[RANK_BY], float) and isinstance(record[TEST_ACC], float)
    assert all(isinstance(record[key], int | float) for key in NUMBERS)
    assert record["hparams"]["model"] == "mlp"
    failed = read_record(OLD / "failed")
    assert failed[STATUS] == Status.FAILED and failed["reason"].startswith("DataError: MNIST not found")


def test_a_record_is_written_with_its_format_and_an_unknown_format_is_unreadable(tmp_path):
    write_record(tmp_path, {STATUS: Status.COMPLETED, RANK_BY: 0.5})
    text = (tmp_path / "metrics.json").read_text()
    assert json.loads(text) == {"format": RECORD_VERSION, "status": "completed", "val/acc_best": 0.5}
    assert text.startswith('{\n  "format"')  # first, so that a reader sees it at once
    for version in (RECORD_VERSION + 1, "2", True, 0):
        (tmp_path / "metrics.json").write_text(json.dumps({"format": version, "status": "completed"}))
        record = read_record(tmp_path)
        assert record[STATUS] == Status.UNREADABLE and "format" in record["reason"], version


def test_every_upgrade_step_names_the_version_it_upgrades_from():
    for steps, latest in ((RECORD_STEPS, RECORD_VERSION), (CHECKPOINT_STEPS, CHECKPOINT_VERSION)):
        versions = [step.upgrades_from for step in steps]
        assert versions == sorted(versions) and all(1 <= v < latest for v in versions)
        assert all(step.why for step in steps)


def test_a_0_1_0_checkpoint_is_rebuilt_and_predicts(old_run):
    from mnistlab.serving.inference import load_inference_model
    from mnistlab.tasks.checkpoint import load_task

    path = old_run / "best.ckpt"
    assert checkpoint_version(torch.load(path, weights_only=True)) == 1
    module, checkpoint = load_task(path)
    assert checkpoint["mnistlab"]["format"] == CHECKPOINT_VERSION
    assert checkpoint["hyper_parameters"]["model"]["name"] == "mlp"
    assert module.hparams.model["hidden"] == [2]
    with torch.no_grad():
        assert module(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    model, card = load_inference_model(str(path))
    assert card.classes == [str(i) for i in range(10)]
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_a_0_1_0_checkpoint_is_evaluated(old_run, tiny_data, tmp_path):
    out = tmp_path / "eval"
    ckpt = old_run / "best.ckpt"
    run_cli("mnistlab.evaluate", f"ckpt_path={ckpt}", "+data.val_size=100", f"hydra.run.dir={out}", data_dir=tiny_data)
    assert 0.0 <= json.loads((out / "evaluation.json").read_text())[TEST_ACC] <= 1.0


def test_checkpoints_are_written_with_their_format_and_an_unknown_one_is_refused(old_run):
    from mnistlab.tasks.checkpoint import read_checkpoint
    from mnistlab.training.callbacks.run_config import StoreRunConfig

    saved: dict = {}
    StoreRunConfig({"seed": 1}).on_save_checkpoint(None, None, saved)  # type: ignore[arg-type]
    assert saved["mnistlab"]["format"] == CHECKPOINT_VERSION and saved["mnistlab"]["config"] == {"seed": 1}
    path = old_run / "best.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    for version in (CHECKPOINT_VERSION + 1, "2"):
        checkpoint["mnistlab"]["format"] = version
        torch.save(checkpoint, path)
        with pytest.raises(ConfigError, match=r"is not a readable mnistlab checkpoint \(checkpoint format"):
            read_checkpoint(path)


def test_a_0_1_0_run_is_resumed_with_its_own_recipe(old_run):
    from mnistlab.core.config import recipe_pins

    pins = recipe_pins(old_run)
    assert "trainer.max_epochs=1" in pins and "ema.decay=null" in pins and "loss.label_smoothing=0.1" in pins


# spelled only in the record module (core/record.py; core/columns.py re-exports its metric table)
RECORD_WORDS = {*(str(s) for s in Status), "val/acc_best", "val/acc", "test/acc", "test/f1", "test/loss"}
RECORD_MODULES = {Path("mnistlab/core/record.py"), Path("mnistlab/core/columns.py")}


def _docstrings(tree: ast.AST) -> set[int]:
    holders = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, holders) and node.body and isinstance(node.body[0], ast.Expr)
    }


def test_statuses_and_metric_keys_are_spelled_in_the_record_module_only():
    """String constants of the package's code (docstrings, comments and messages that merely mention one aside:
    an f-string's text is not a constant equal to the key)."""
    found = []
    for path in sorted((REPO / "mnistlab").rglob("*.py")):
        relative = path.relative_to(REPO)
        if relative in RECORD_MODULES:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = _docstrings(tree)
        found += [
            f"{relative}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in RECORD_WORDS and id(node) not in docstrings
        ]
    assert not found, "use mnistlab.core.record's names:\n" + "\n".join(found)
