"""Never lose a run: resume after SIGKILL, sweeps that survive failures, clear errors, determinism, DDP,
parallel and Optuna sweeps, safe checkpoint loading."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from helpers import REPO, TESTS, needs
from helpers.cli import FAST, run_cli
from helpers.data import write_checkpoint, write_tiny_dataset
from helpers.runs import metrics, without_times
from helpers.tb import hparams_sessions

DETERMINISTIC = [*FAST, "trainer.max_epochs=3", "trainer.deterministic=true", "model=cnn_bn_do", "data=mnist_aug"]


@pytest.fixture(scope="module")
def reference_run(tiny_data, tmp_path_factory) -> Path:
    """An uninterrupted deterministic run of 3 epochs (16 steps each)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    run_cli("mnistlab.train", *DETERMINISTIC, f"hydra.run.dir={run_dir}", data_dir=tiny_data)
    return run_dir


def test_same_seed_gives_identical_metrics(reference_run, tiny_data, tmp_path):
    run_cli("mnistlab.train", *DETERMINISTIC, f"hydra.run.dir={tmp_path}", data_dir=tiny_data)
    assert without_times(metrics(tmp_path)) == without_times(metrics(reference_run))
    run_cli("mnistlab.train", *DETERMINISTIC, "seed=7", f"hydra.run.dir={tmp_path / 'other'}", data_dir=tiny_data)
    assert metrics(tmp_path / "other")["test/loss"] != metrics(reference_run)["test/loss"]


def test_resume_after_sigkill_mid_epoch_matches_an_uninterrupted_run(reference_run, tiny_data, tmp_path):
    killed = run_cli(
        "mnistlab.train",
        *DETERMINISTIC,
        f"hydra.run.dir={tmp_path}",
        "+callbacks.kill._target_=helpers.killer.KillAtStep",
        "+callbacks.kill.step=24",
        data_dir=tiny_data,
        env={"PYTHONPATH": str(TESTS)},
        check=False,
    )
    assert killed.returncode == -9  # SIGKILL in epoch 2 (steps 16-31): last.ckpt is from the end of epoch 1
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file() and not (tmp_path / "metrics.json").exists()
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))  # atomic saves leave no partial file

    # the killing callback is not replayed: a resume never takes callback settings from a run dir
    resumed_run = run_cli("mnistlab.train", f"resume={tmp_path}", data_dir=tiny_data)
    assert "does not replay '+callbacks.kill._target_=helpers.killer.KillAtStep'" in resumed_run.stderr
    resumed, reference = metrics(tmp_path), metrics(reference_run)
    assert resumed["status"] == "completed" and resumed["epochs"] == 3
    for key in ("val/acc_best", "test/acc", "test/f1", "test/loss"):
        assert resumed[key] == reference[key], key
    assert len(hparams_sessions(tmp_path)) == 1  # the same TensorBoard run, still one HParams row
    overrides = (tmp_path / ".hydra" / "overrides.yaml").read_text()
    assert "model=cnn_bn_do" in overrides and "ckpt_path=" in overrides


def test_sweep_survives_a_diverging_and_an_invalid_job(tiny_data, tmp_path):
    args = ["-m", *FAST, "model=mlp", "data=mnist", "optim=sgd", "optim.lr=0.05,1e12,-1", f"hydra.sweep.dir={tmp_path}"]
    result = run_cli("mnistlab.train", *args, data_dir=tiny_data, check=False)
    assert result.returncode == 1
    assert "1 of 3 runs completed, 2 failed" in result.stdout.strip().splitlines()[-1]
    statuses = [metrics(tmp_path / str(i)) for i in range(3)]
    assert statuses[0]["status"] == "completed"
    assert statuses[1]["status"] == "failed" and "training loss is" in statuses[1]["reason"]
    assert statuses[1]["reason"].split()[-4] in ("nan", "inf")
    assert statuses[2]["status"] == "failed" and "optim.lr=-1 must be > 0" in statuses[2]["reason"]

    first = statuses[0]["finished_at"]
    result = run_cli("mnistlab.train", *args, "skip_completed=true", data_dir=tiny_data, check=False)
    assert result.returncode == 1
    assert metrics(tmp_path / "0")["finished_at"] == first  # skipped, not run again
    assert metrics(tmp_path / "2")["finished_at"] > first  # failed jobs are retried


@pytest.fixture(scope="module")
def mlp_checkpoint(tmp_path_factory) -> Path:
    """An MLP checkpoint (its default hidden=[128]) as training writes it, at random weights."""
    return write_checkpoint(tmp_path_factory.mktemp("mlp") / "best.ckpt", model={"name": "mlp"})


class Evil:
    """Unpickling this runs code: a checkpoint must never be loaded in a way that allows it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _corrupt_data(root: Path, how: str) -> Path:
    write_tiny_dataset(root)
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    if how == "magic":
        images.write_bytes(b"GIF89a" + images.read_bytes()[6:])
    else:
        images.write_bytes(images.read_bytes()[:-100])
    return root


ERROR_CASES = [
    (["model=resnet50"], "model='resnet50' is not a preset; did you mean model=resnet? choose one of cnn, cnn3"),
    (["data=imagenet"], "data='imagenet' is not a preset; did you mean data=tiny_imagenet? choose one of cifar10"),
    (["optim=lion"], "optim='lion' is not a preset; choose one of adam, adamw, rmsprop, sgd, sgd_momentum"),
    (["model.activation=swish"], "model.activation='swish' is not one of relu, tanh, sigmoid, gelu, selu"),
    (["model.init=orthogonal"], "model.init='orthogonal' is not one of default, kaiming, xavier, zeros"),
    (["model.norm=layer"], "model.norm='layer' is not one of none, batch"),
    (["optim.lr=0"], "optim.lr=0 must be > 0"),
    (["optim.lr=-0.1"], "optim.lr=-0.1 must be > 0"),
    (["optim.lr=fast"], "optim.lr='fast' must be a number"),
    (["model.dropout=1.0"], "model.dropout=1.0 must be in [0, 1)"),
    (["model.dropout=-0.2"], "model.dropout=-0.2 must be in [0, 1)"),
    (["data.batch_size=0"], "data.batch_size=0 must be a positive integer"),
    (["data.batch_size=-8"], "data.batch_size=-8 must be a positive integer"),
    (["data.eval_batch_size=0"], "data.eval_batch_size=0 must be a positive integer"),
    (["data.val_size=0"], "data.val_size=0 must be a number of samples >= 1 or a fraction in (0, 1)"),
    (["data.val_size=595"], "data.val_size=595 must be between 10 (one per class) and 590"),
    (["optim.weight_decay=-1"], "optim.weight_decay=-1 must be >= 0"),
    (["optim=sgd_momentum", "optim.momentum=1.5"], "optim.momentum=1.5 must be in [0, 1)"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 must be >= 1"),
    (["trainer.precision=8-mixed"], "trainer.precision='8-mixed' is not one of"),
    (["scheduler=step", "scheduler.interval=hour"], "scheduler.interval='hour' is not one of step, epoch"),
    (["+data.augment.rotate=10"], "data.augment has unknown key(s) ['rotate']"),
    (["data.augment.translate=1.5"], "data.augment.translate=1.5 must be in [0, 1)"),
    (
        ["data.dataset=svhn"],
        "data.dataset='svhn' is not a registered dataset; choose one of cifar10, csv, fashion_mnist, folder, hf",
    ),
    (["ckpt_path=/no/such/file.ckpt"], "ckpt_path=/no/such/file.ckpt does not exist"),
    (["resume=/no/such/run"], "resume=/no/such/run is not a run dir (no .hydra/overrides.yaml)"),
]


@pytest.mark.parametrize(("overrides", "expected"), ERROR_CASES, ids=[" ".join(c[0]) for c in ERROR_CASES])
def test_invalid_input_is_one_line_and_no_traceback(command_error, tmp_path, overrides, expected):
    """In this process (the exit status and stderr of the real command: tests/test_catalogue.py)."""
    assert expected in command_error("train", *overrides, f"hydra.run.dir={tmp_path / 'run'}")


@pytest.mark.parametrize(
    ("how", "expected"),
    [("magic", "is not an unsigned-byte IDX file (bad magic"), ("truncated", "is truncated or corrupt")],
)
def test_corrupt_idx_files(command_error, tmp_path, monkeypatch, how, expected):
    root = _corrupt_data(tmp_path / "data", how)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(root))
    assert expected in command_error("train", f"hydra.run.dir={tmp_path / 'run'}")


def test_bad_checkpoints_are_refused(mlp_checkpoint, command_error, tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(os.urandom(4096))
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {}, "state_dict": {}, "payload": Evil(marker)}, evil, pickle_module=pickle)
    cases = [
        (["model=mlp", f"ckpt_path={garbage}"], "is not a readable mnistlab checkpoint"),
        (["model=mlp", f"ckpt_path={evil}"], "is not a readable mnistlab checkpoint"),
        (
            ["model=cnn", f"ckpt_path={mlp_checkpoint}"],
            "holds another architecture: model.name='mlp'",
        ),
        (["model=mlp", "model.hidden=[64]", f"ckpt_path={mlp_checkpoint}"], "model.hidden=[128] (not [64])"),
    ]
    for overrides, expected in cases:
        assert expected in command_error("train", *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    message = command_error("evaluate", f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'eval'}")
    assert "is not a readable mnistlab checkpoint" in message
    assert not marker.exists()  # the payload never ran (in this very process)


def test_no_unsafe_torch_load_anywhere():
    sources = [p for p in (REPO / "mnistlab").rglob("*.py")]
    assert sources and not [p for p in sources if "weights_only=False" in p.read_text()]


def test_ddp_cpu_trains_with_synced_metrics(tiny_data, tmp_path):
    """2 gloo processes; rank 0 alone writes; its test metrics, synced across ranks, equal a single-process
    evaluation of the same checkpoint on the whole test set."""
    run_cli(
        "mnistlab.train",
        *FAST,
        "trainer=ddp_cpu",
        "model=cnn_bn",
        "data=mnist",
        f"hydra.run.dir={tmp_path}",
        data_dir=tiny_data,
    )
    assert (tmp_path / "train_ddp_process_1.log").is_file()  # the second rank really ran
    ddp = metrics(tmp_path)
    assert ddp["status"] == "completed"
    evaluated = run_cli(
        "mnistlab.evaluate",
        f"ckpt_path={tmp_path}/checkpoints/best.ckpt",
        f"hydra.run.dir={tmp_path / 'eval'}",
        "trainer.enable_progress_bar=false",
        data_dir=tiny_data,
    )
    single = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert single["test/loss"] == pytest.approx(ddp["test/loss"], rel=1e-5), evaluated.stdout
    assert single["test/acc"] == pytest.approx(ddp["test/acc"], abs=1e-6)
    assert len(list(tmp_path.glob("metrics.json"))) == 1 and len(list(tmp_path.glob("events.out.*"))) >= 1


def test_mixed_precision_with_gradient_clipping_trains(tiny_data, tmp_path):
    """Mixed precision cannot clip a fused optimizer's gradients: the optimizer is then built unfused."""
    run_cli(
        "mnistlab.train",
        *FAST,
        "trainer.max_epochs=1",
        "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=1.0",
        "optim=adamw",
        f"hydra.run.dir={tmp_path}",
        data_dir=tiny_data,
    )
    assert metrics(tmp_path)["status"] == "completed"


def test_joblib_parallel_sweep(tiny_data, tmp_path):
    result = run_cli(
        "mnistlab.train",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *FAST,
        "model=mlp",
        "data=mnist",
        "trainer.max_epochs=1",
        "optim=sgd,adam",
        f"hydra.sweep.dir={tmp_path}",
        data_dir=tiny_data,
    )
    assert "2 of 2 runs completed, 0 failed" in result.stdout
    assert {metrics(tmp_path / str(i))["hparams"]["optim"] for i in range(2)} == {"sgd", "adam"}
    # the idle workers are ended when the sweep is done: each job's log was written to its last line first
    assert all("results in" in (tmp_path / str(i) / "train.log").read_text() for i in range(2))


@needs("optuna")
def test_optuna_search_is_stored_in_the_sweep_dir_and_continues_to_its_total(tiny_data, tmp_path):
    import optuna

    def args(n_trials: int) -> list[str]:
        return [
            "-m",
            "hparams_search=optuna",
            f"hydra.sweeper.n_trials={n_trials}",
            *FAST,
            "model=mlp",
            "data=mnist",
            "trainer.max_epochs=1",
            f"hydra.sweep.dir={tmp_path}",
        ]

    run_cli("mnistlab.train", *args(2), data_dir=tiny_data)
    run_cli("mnistlab.train", *args(2), data_dir=tiny_data)  # the total is reached: nothing more runs
    storage = f"sqlite:///{tmp_path}/optuna.db"
    assert len(optuna.load_study(study_name="mnistlab", storage=storage).trials) == 2
    run_cli("mnistlab.train", *args(3), data_dir=tiny_data)  # one more, to a total of 3
    study = optuna.load_study(study_name="mnistlab", storage=storage)
    assert len(study.trials) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert study.direction.name == "MAXIMIZE"
    trial_dirs = sorted(p.name for p in tmp_path.iterdir() if (p / "metrics.json").is_file())
    assert trial_dirs == ["0", "1", "2"]  # one per trial, none overwritten by a later invocation
    assert study.best_value == max(metrics(tmp_path / d)["val/acc_best"] for d in trial_dirs)
