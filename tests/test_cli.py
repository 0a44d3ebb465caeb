"""End to end through the command line, on tiny data the tests write themselves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO
from helpers.cli import FAST, run_cli
from helpers.tb import hparams_sessions, last_scalar, load

METRIC_KEYS = {
    "status",
    "val/acc_best",
    "test/acc",
    "test/f1",
    "test/loss",
    "epochs",
    "train_time_s",
    "time_per_epoch_s",
    "peak_memory_mb",
    "params",
}
HPARAM_KEYS = {
    "data",
    "dataset",
    "model",
    "norm",
    "dropout",
    "activation",
    "init",
    "optim",
    "lr",
    "weight_decay",
    "scheduler",
    "trainer",
    "batch_size",
    "precision",
    "seed",
    "fold",
    "permute_pixels",
    "label_smoothing",
    "ema_decay",
}


@pytest.fixture(scope="module")
def trained_run(tiny_data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "run"
    run_cli("mnistlab.train", *FAST, "model=cnn_bn_do", "data=mnist", f"hydra.run.dir={run_dir}", data_dir=tiny_data)
    return run_dir


def test_run_writes_every_file(trained_run):
    assert (trained_run / ".hydra" / "config.yaml").is_file()
    assert (trained_run / "checkpoints" / "best.ckpt").is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert list(trained_run.glob("events.out.tfevents.*"))
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics) >= METRIC_KEYS
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    assert metrics["test/acc"] > 0.9  # the tiny data set is easy: a broken pipeline stays near 0.1
    assert metrics["params"] == 288 + 64 + 18_432 + 128 + 3136 * 128 + 128 + 1290  # cnn_bn_do, bias-free convs
    assert metrics["peak_memory_mb"] > 0 and metrics["time_per_epoch_s"] > 0
    assert set(metrics["hparams"]) == HPARAM_KEYS


def test_checkpoint_loads_with_weights_only_and_rebuilds(trained_run):
    from mnistlab.tasks.checkpoint import load_task as load_checkpoint

    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["model"]["norm"] == "batch"
    assert checkpoint["mnistlab"]["config"]["data"]["dataset"] == "mnist"
    model, _ = load_checkpoint(str(trained_run / "checkpoints" / "best.ckpt"))
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert model.mean.flatten().tolist() == pytest.approx(checkpoint["hyper_parameters"]["mean"])


def test_tensorboard_has_curves_and_one_hparams_session(trained_run):
    sessions = hparams_sessions(trained_run)
    assert len(sessions) == 1 and set(sessions[0]) == HPARAM_KEYS
    assert sessions[0]["model"] == "cnn_bn_do" and sessions[0]["norm"] == "batch"
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert last_scalar(trained_run, "test/acc") == pytest.approx(metrics["test/acc"])
    assert last_scalar(trained_run, "val/acc_best") == pytest.approx(metrics["val/acc_best"])
    tags = load(trained_run).Tags()["scalars"]
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/f1"} <= set(tags)
    assert "hp_metric" not in tags


def test_evaluate_reproduces_the_test_metrics(trained_run, tiny_data, tmp_path):
    result = run_cli(
        "mnistlab.evaluate",
        f"ckpt_path={trained_run}/checkpoints/best.ckpt",
        f"hydra.run.dir={tmp_path}",
        "trainer.enable_progress_bar=false",
        data_dir=tiny_data,
    )
    output = result.stdout + result.stderr  # quiet as training: each Lightning line once, no tips or deprecations
    assert output.count("GPU available:") == 1 and "💡" not in output and "LeafSpec" not in output, output
    metrics = json.loads((trained_run / "metrics.json").read_text())
    printed = dict(line.split(": ") for line in result.stdout.splitlines() if line.startswith("test/"))
    assert set(printed) == {"test/acc", "test/f1", "test/loss"}
    assert float(printed["test/acc"]) == pytest.approx(metrics["test/acc"], abs=1e-4)
    assert json.loads((tmp_path / "evaluation.json").read_text())["test/acc"] == pytest.approx(metrics["test/acc"])


def test_multirun_gives_one_hparams_row_per_run(tiny_data, tmp_path):
    run_cli(
        "mnistlab.train",
        "--multirun",
        *FAST,
        "model=mlp",
        "data=mnist",
        "trainer.max_epochs=1",
        "optim=sgd,adam",
        "model.norm=none,batch",
        f"hydra.sweep.dir={tmp_path}",
        data_dir=tiny_data,
    )
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1", "2", "3"]
    rows = set()
    for run in runs:
        (session,) = hparams_sessions(run)
        assert set(session) == HPARAM_KEYS
        rows.add((session["optim"], session["norm"]))
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        assert last_scalar(run, "test/acc") == pytest.approx(metrics["test/acc"])
    assert rows == {("sgd", "none"), ("sgd", "batch"), ("adam", "none"), ("adam", "batch")}


def test_lr_find_saves_plot_and_applies_suggestion(tiny_data, tmp_path):
    run_cli(
        "mnistlab.train",
        *FAST,
        "model=mlp",
        "data=mnist",
        "trainer.max_epochs=1",
        "tune.lr_find=true",
        "tune.num_training=30",
        f"hydra.run.dir={tmp_path}",
        data_dir=tiny_data,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    suggestion = metrics["lr_find/suggestion"]
    assert isinstance(suggestion, float) and 1e-6 <= suggestion <= 1.0
    # applied only when it passes the finder's checks; otherwise the preset's rate is what trained
    expected = suggestion if metrics["lr_find/applied"] else 3e-3
    assert metrics["lr"] == pytest.approx(expected) and metrics["hparams"]["lr"] == pytest.approx(expected)
    assert metrics["lr_find/applied"] or metrics["lr_find/reason"]
    assert (tmp_path / "lr_find.png").stat().st_size > 1000
    assert "lr_find" in load(tmp_path).Tags()["images"]
    assert not list(tmp_path.glob(".lr_find_*.ckpt"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.activation=swish", "model.activation='swish' is not one of relu, tanh"),
        ("model.dropout=1.5", "model.dropout=1.5 must be in [0, 1)"),
        ("optim.lr=-1", "optim.lr=-1 must be > 0"),
        ("data.val_size=70000", "data.val_size=70000 must be between 10"),
    ],
)
def test_bad_input_is_one_clear_line(command_error, tmp_path, override, expected):
    """In this process (the exit status and stderr of the real command: tests/test_catalogue.py)."""
    assert expected in command_error("train", override, f"hydra.run.dir={tmp_path / 'run'}")


def test_missing_data_says_where_to_put_it(command_error, tmp_path, monkeypatch):
    empty = tmp_path / "nothing"
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(empty))
    message = command_error("train", "data.download=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert message.startswith(f"MNIST not found in {empty}/MNIST/raw")
    assert "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte" in message


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    """What ``--help`` prints, of each command whose help is checked here."""
    return {command: run_cli(f"mnistlab.{command}", "--help").stdout for command in ("train", "evaluate")}


def test_help_is_fast_because_nothing_heavy_is_imported(helps):
    code = "import sys, mnistlab.train; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
    assert "model: cnn, cnn3, cnn_bn, cnn_bn_do, cnn_do, cnn_small, fasterrcnn, linear, mlp" in helps["train"]


def test_each_help_lists_its_own_groups_only(helps):
    """Hydra's $APP_CONFIG_GROUPS listed every folder of conf/: train's optim, scheduler… in evaluate's help."""
    train, evaluate = helps["train"], helps["evaluate"]
    assert "\noptim: adam, adamw" in train and "\nscheduler: " in train
    assert "\ntrainer: cpu, " in evaluate and "\npaths: default" in evaluate
    assert "optim:" not in evaluate and "scheduler:" not in evaluate and "model:" not in evaluate


def test_csv_logger_warns_only_of_an_earlier_metrics_csv(tmp_path, recwarn):
    """A new run dir already holds Hydra's files: Lightning warned "exists and is not empty" for each run."""
    from mnistlab.training.loggers import CSVLogger

    (tmp_path / ".hydra").mkdir()
    (tmp_path / "train.log").write_text("")
    assert Path(CSVLogger(save_dir=tmp_path, name="", version="").experiment.log_dir) == tmp_path
    assert not [w for w in recwarn if "not empty" in str(w.message)]
    (tmp_path / "metrics.csv").write_text("step\n0\n")  # an earlier run's metrics, which Lightning replaces
    with pytest.warns(UserWarning, match="exists and is not empty"):
        assert CSVLogger(save_dir=tmp_path, name="", version="").experiment is not None


def test_lightning_logs_once_through_the_commands_handlers(monkeypatch):
    """`import lightning` after a command has set up logging added a second console handler (evaluate printed each
    Lightning line twice); its tips are dropped."""
    import logging

    from mnistlab.core.quiet import quiet_console

    handler = logging.StreamHandler()
    monkeypatch.setattr(logging.root, "handlers", [handler])
    quiet_console()
    logging.getLogger("lightning").addHandler(logging.StreamHandler())  # what `import lightning` does
    assert logging.getLogger("lightning").handlers == []
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert not tips.filter(logging.makeLogRecord({"msg": "💡 Tip: try installing litlogger"}))
    assert tips.filter(logging.makeLogRecord({"msg": "GPU available: False, used: False"}))


def test_ablation_preset_sweeps_its_matrix(tiny_data, tmp_path):
    """`-m experiment=ablation` takes its matrix from hydra.sweeper.params; command-line values replace an
    axis, which reduces it here to 2 runs."""
    reduce = ["optim=sgd", "model.norm=none", "model.dropout=0.0", "model.activation=relu,tanh", "model.init=kaiming"]
    run_cli(
        "mnistlab.train",
        "-m",
        "experiment=ablation",
        *FAST,
        "trainer.max_epochs=1",
        *reduce,
        f"hydra.sweep.dir={tmp_path}",
        data_dir=tiny_data,
    )
    sessions = [hparams_sessions(tmp_path / str(i))[0] for i in range(2)]
    assert {s["activation"] for s in sessions} == {"relu", "tanh"}
    assert all(s["model"] == "cnn" and s["init"] == "kaiming" and s["scheduler"] == "none" for s in sessions)
    assert not (tmp_path / "2").exists()


def test_bf16_mixed_precision_on_cpu(tiny_data, tmp_path):
    run_cli(
        "mnistlab.train",
        *FAST,
        "model=cnn_bn",
        "data=mnist",
        "trainer.max_epochs=1",
        "trainer.precision=bf16-mixed",
        f"hydra.run.dir={tmp_path}",
        data_dir=tiny_data,
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["hparams"]["precision"] == "bf16-mixed"
    assert metrics["test/acc"] > 0.5


def test_one_cycle_survives_a_four_step_run(tiny_data, tmp_path):
    """OneCycleLR divides by zero when total_steps × pct_start is 1 (4 × 0.25): such a short run must still train."""
    run_cli(
        "mnistlab.train",
        *FAST,
        "data=mnist",
        "model=linear",
        "scheduler=onecycle",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=4",
        f"hydra.run.dir={tmp_path}",
        data_dir=tiny_data,
    )
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "completed"


def test_a_command_ends_fast_yet_like_a_normal_exit(tmp_path):
    """The interpreter's teardown is skipped, nothing else: threads finish, atexit handlers run, output is
    flushed, the exit status is kept."""
    script = f"""
import atexit, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from mnistlab.core.process import end_process

out = Path({str(tmp_path)!r})
atexit.register(lambda: (out / "atexit").write_text("ran"))
threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
ThreadPoolExecutor(1).submit(lambda: (time.sleep(0.3), (out / "pool").write_text("done")))
sys.stdout.write("unflushed")
end_process(lambda: sys.exit(3))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "unflushed"
    assert {p.name for p in tmp_path.iterdir()} == {"atexit", "thread", "pool"}
