"""Checkpoints and run dirs are data: every command that reads a checkpoint refuses one whose stored config
asks for code (Hydra's ``_target_`` at any depth), with one line, and no file appears; names resolve through
the registries only, so an unknown name imports nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO, TESTS, needs
from helpers.cli import FAST
from helpers.data import write_checkpoint

WRITE = {"_target_": "pathlib.Path.write_text", "data": "pwned"}


def evil_checkpoint(path: Path, marker: Path, where: str) -> Path:
    """A checkpoint that torch.load(weights_only=True) reads fine, carrying a file write in ``where``."""
    write_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    payload = {**WRITE, "self": str(marker)}
    if where == "data":
        checkpoint["mnistlab"]["config"]["data"]["augment"] = {"rotation": payload}
    elif where == "model":
        checkpoint["hyper_parameters"]["model"]["init"] = payload
    elif where == "optim":
        checkpoint["hyper_parameters"]["optim"] = {"_target_": "builtins.open", "file": str(marker), "mode": "w"}
    torch.save(checkpoint, path)
    return path


COMMANDS = {
    "train ckpt_path": lambda ckpt: ("train", [*FAST, "model=cnn", f"ckpt_path={ckpt}"]),
    "evaluate": lambda ckpt: ("evaluate", [f"ckpt_path={ckpt}"]),
    "predict": lambda ckpt: ("predict", [f"ckpt_path={ckpt}", f"inputs={REPO / 'README.md'}"]),
    "serve": lambda ckpt: ("serve", [f"ckpt_path={ckpt}", "port=0"]),
    "export": lambda ckpt: ("export", [f"ckpt_path={ckpt}"]),
}


@pytest.mark.parametrize("where", ["data", "model", "optim"])
@pytest.mark.parametrize(
    "command", [pytest.param(c, marks=needs("fastapi", "uvicorn")) if c == "serve" else c for c in COMMANDS]
)
def test_a_checkpoint_asking_for_code_is_refused_by_every_command(command, where, command_error, tmp_path):
    """In this process, where a payload that ran would leave its marker as surely as in a subprocess."""
    marker = tmp_path / "pwned"
    ckpt = evil_checkpoint(tmp_path / "evil.ckpt", marker, where)
    name, args = COMMANDS[command](ckpt)
    message = command_error(name, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert "is refused" in message and "_target_" in message, message
    assert not marker.exists()
    assert not list(tmp_path.glob("*.onnx")) and not list(tmp_path.glob("*.torchscript.pt"))


def test_resuming_a_run_whose_checkpoint_asks_for_code_is_refused(command_error, tmp_path):
    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- model=cnn\n")
    evil_checkpoint(run_dir / "checkpoints" / "last.ckpt", marker, "data")
    assert "is refused: config.data.augment.rotation._target_" in command_error("train", f"resume={run_dir}", *FAST)
    assert not marker.exists()


def test_resume_does_not_replay_overrides_that_name_code(tmp_path, capsys):
    from mnistlab.core.config import expand_resume

    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run_dir / ".hydra" / "overrides.yaml").write_text(
        "- model=cnn\n- +callbacks.evil._target_=pathlib.Path.write_text\n- data.data_dir=${oc.env:HOME}\n"
        "- 'callbacks.x={_target_: shutil.copyfile}'\n- hydra.searchpath=[pkg://antigravity]\n"
        "- '+hydra.job_logging.handlers.x={class: os.system}'\n- paths.output_dir=/tmp/elsewhere\n"
        "- hydra/launcher=joblib\n- +evil=payload\n- model@x=cnn\n- model.compile=true\n"
    )
    argv = expand_resume(["train.py", f"resume={run_dir}", "trainer.max_epochs=3"])
    assert argv[1:4] == ["model=cnn", "speed.compile=true", "trainer.max_epochs=3"]
    assert not any(s in a for a in argv for s in ("_target_", "${", "hydra.search", "paths.", "evil", "launcher"))
    assert capsys.readouterr().err.count("note: resume does not replay") == 9


def test_an_unknown_model_name_is_refused_without_importing_it(tmp_path):
    """``model.name`` is looked up, never imported: ``this`` (the Zen of Python) must stay unimported."""
    code = f"""
import sys, torch
from helpers.data import write_checkpoint
from mnistlab.core.errors import ConfigError
from mnistlab.tasks.checkpoint import load_task
path = write_checkpoint(__import__("pathlib").Path({str(tmp_path)!r}) / "c.ckpt")
ckpt = torch.load(path, weights_only=True)
for name in ("this", "os.system", "mnistlab.models.CNN.__init__"):
    ckpt["hyper_parameters"]["model"]["name"] = name
    torch.save(ckpt, path)
    try:
        load_task(path)
    except ConfigError as err:
        assert "is not a registered model" in str(err), err
    else:
        raise AssertionError(name)
assert "this" not in sys.modules
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=TESTS, capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_legacy_checkpoints_with_import_paths_still_load(tmp_path):
    """Checkpoints written before the registries named their classes by import path; those exact paths are
    translated to registry names (as text), anything else is refused."""
    from mnistlab.serving.inference import load_inference_model
    from mnistlab.tasks.checkpoint import load_task

    path = write_checkpoint(tmp_path / "old.ckpt")
    ckpt = torch.load(path, weights_only=True)
    hp = ckpt["hyper_parameters"]
    hp["model"] = {"_target_": "mnistlab.models.CNN", **{k: v for k, v in hp["model"].items() if k != "name"}}
    hp["model"].update(compile=False, channels_last=True)
    hp["optim"] = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1}
    hp["scheduler"] = {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "_partial_": True, "interval": "step"}
    ckpt["mnistlab"]["config"]["data"] = {"_target_": "mnistlab.data.MNISTDataModule", "dataset": "fashion_mnist"}
    torch.save(ckpt, path)
    _, upgraded = load_task(path)
    model = upgraded["hyper_parameters"]["model"]
    assert model["name"] == "cnn" and "compile" not in model
    assert upgraded["hyper_parameters"]["optim"] == {"name": "sgd", "lr": 0.1}
    assert upgraded["hyper_parameters"]["scheduler"]["name"] == "onecyclelr"
    assert upgraded["mnistlab"]["config"]["data"] == {"dataset": "fashion_mnist"}
    _, card = load_inference_model(str(path))
    assert card.preprocess == "fit"  # Fashion-MNIST's style, from the translated data config

    hp["model"]["_target_"] = "os.system"
    torch.save(ckpt, path)
    from mnistlab.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"is refused: hyper_parameters\.model\._target_"):
        load_task(path)
