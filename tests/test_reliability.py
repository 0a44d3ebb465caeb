"""Never lose a result: resume and fine-tune as the README says, signals, locked run and sweep dirs, corrupt
records, a server that cannot be starved, non-finite values, early data checks."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import needs
from helpers.cli import FAST, run_cli, serving, start_train
from helpers.data import write_checkpoint, write_idx, write_tiny_dataset
from helpers.runs import metrics
from PIL import Image

SMALL = [*FAST, "model=cnn", "data=mnist"]  # what the shared cnn_run ran


@pytest.fixture
def finished_run(cnn_run) -> Path:
    """A finished run of SMALL, shared with other modules (copied before any change)."""
    return cnn_run


# -- 1. the README's resume and fine-tune commands -------------------------------------------------------
def test_resume_with_more_epochs_extends_the_schedule_in_a_copied_run_dir(finished_run, tiny_data, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(finished_run, copy)  # a run dir moved or copied elsewhere resumes in its new place
    result = run_cli("mnistlab.train", f"resume={copy}", "trainer.max_epochs=4", data_dir=tiny_data)
    record = metrics(copy)
    assert record["status"] == "completed" and record["epochs"] == 4 and len(record["val_curve"]) == 4
    assert record["val_curve"][:2] == metrics(finished_run)["val_curve"]
    assert record["best_checkpoint"] == "checkpoints/best.ckpt"
    assert "the onecycle schedule now spans 64 steps (was 32)" in result.stdout + result.stderr
    assert (finished_run / "checkpoints" / "best.ckpt").stat().st_mtime < (copy / "metrics.json").stat().st_mtime


def test_ckpt_path_on_a_new_run_fine_tunes_from_the_weights_alone(finished_run, tiny_data, tmp_path):
    best = finished_run / "checkpoints" / "best.ckpt"
    result = run_cli("mnistlab.train", *SMALL, f"ckpt_path={best}", f"hydra.run.dir={tmp_path}", data_dir=tiny_data)
    record = metrics(tmp_path)
    assert record["status"] == "completed" and record["epochs"] == 2 and len(record["val_curve"]) == 2
    assert "fine-tuning from the weights of" in result.stdout + result.stderr
    assert record["val_curve"][0] >= metrics(finished_run)["val_curve"][0]  # it starts from trained weights


# -- 2. a failed resume loses nothing --------------------------------------------------------------------
def test_a_failed_resume_keeps_the_completed_record_and_the_overrides(finished_run, command_error, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = {n: (run_dir / ".hydra" / n).read_text() for n in ("overrides.yaml", "config.yaml")}
    record = metrics(run_dir)
    for bad, expected in (("optim.lr=-1", "optim.lr=-1 must be > 0"), ("data.val_size=100000", "data.val_size")):
        assert expected in command_error("train", f"resume={run_dir}", bad)
        assert metrics(run_dir) == record
        assert {n: (run_dir / ".hydra" / n).read_text() for n in before} == before
        assert not (run_dir / ".hydra" / "before-resume").exists()


# -- 3. signals -------------------------------------------------------------------------------------------
def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert process.poll() is None, process.stdout.read().decode()[-3000:]
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_sigterm_ends_a_run_non_zero_with_an_interrupted_record_to_resume_from(tiny_data, tmp_path):
    process = start_train([*SMALL, "trainer.max_epochs=400", f"hydra.run.dir={tmp_path}"], tiny_data)
    _wait_for(tmp_path / "checkpoints" / "last.ckpt", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
    record = metrics(tmp_path)
    assert record["status"] == "interrupted" and record["reason"].startswith("SIGTERM after")
    assert record["epochs"] >= 1 and record["resume_with"] == f"resume={tmp_path}"
    assert not (tmp_path / ".mnistlab.lock").exists()


def test_sigterm_in_a_sweep_still_writes_the_summary_and_report(tiny_data, tmp_path):
    args = ["-m", *SMALL, "trainer.max_epochs=400", "optim=sgd,adam", f"hydra.sweep.dir={tmp_path}"]
    process = start_train(args, tiny_data)
    _wait_for(tmp_path / "0" / "checkpoints" / "last.ckpt", process)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode()
    assert process.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert "0 of 1 runs completed, 1 failed" in output
    assert (tmp_path / "report.md").is_file() and "interrupted" in (tmp_path / "runs.csv").read_text()


# -- 4. one writer per run dir and sweep dir --------------------------------------------------------------
def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(tiny_data, tmp_path):
    import socket

    run_dir, sweep_dir = tmp_path / "run", tmp_path / "sweep"
    for folder in (run_dir, sweep_dir):
        folder.mkdir()
        (folder / ".mnistlab.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    attempts = (
        [f"hydra.run.dir={run_dir}"],
        [f"resume={run_dir}"],
        ["-m", "optim=sgd,adam", f"hydra.sweep.dir={sweep_dir}"],
    )
    for args in attempts:
        result = run_cli("mnistlab.train", *SMALL, *args, data_dir=tiny_data, check=False)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert result.returncode == 2 and len(errors) == 1 and f"is in use by process {os.getpid()}" in errors[0]
    assert not (run_dir / "metrics.json").exists() and not (sweep_dir / "0").exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run_dir / ".mnistlab.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    run_cli("mnistlab.train", *SMALL, f"hydra.run.dir={run_dir}", data_dir=tiny_data)
    assert metrics(run_dir)["status"] == "completed" and not (run_dir / ".mnistlab.lock").exists()


# -- 5. a corrupt record ----------------------------------------------------------------------------------
def test_a_corrupt_metrics_json_is_rerun_and_named(tiny_data, tmp_path):
    args = ["-m", *SMALL, "optim=sgd,adam", f"hydra.sweep.dir={tmp_path}"]
    run_cli("mnistlab.train", *args, data_dir=tiny_data)
    (tmp_path / "1" / "metrics.json").write_text('{"status": "compl')
    report = run_cli("mnistlab.report", str(tmp_path), check=True)
    assert "metrics.json is not readable JSON" in (tmp_path / "report.md").read_text(), report.stdout
    result = run_cli("mnistlab.train", *args, "skip_completed=true", data_dir=tiny_data)
    assert "2 of 2 runs completed, 0 failed" in result.stdout
    assert metrics(tmp_path / "1")["status"] == "completed"


# -- 6. the server under hostile load ---------------------------------------------------------------------
def huge_16bit_png() -> bytes:
    """A 3000×3000 16-bit PNG of a few hundred KB: cheap to send, costly to decode."""
    array = np.zeros((3000, 3000), dtype=np.uint16)
    array[1000:2000, 1400:1600] = 60000
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@needs("fastapi", "uvicorn", "multipart")
def test_health_answers_while_huge_decodes_run(tmp_path):
    import httpx

    ckpt = write_checkpoint(tmp_path / "best.ckpt")
    payload = huge_16bit_png()
    with serving(ckpt, "workers=2", "access_log=false") as url:
        with httpx.Client(timeout=120) as client:
            assert client.post(url + "api/v1/predict", files={"file": ("big.png", payload)}).status_code == 200
        latencies: list[float] = []
        done = threading.Event()

        def attack(address: str) -> None:  # ten clients, each from its own address (8 connections each at most)
            with httpx.Client(timeout=300, transport=httpx.HTTPTransport(local_address=address)) as client:
                client.post(url + "api/v1/predict", files={"file": ("big.png", payload)})

        attackers = [threading.Thread(target=attack, args=(f"127.0.1.{i + 1}",)) for i in range(10)]
        for thread in attackers:
            thread.start()
        with httpx.Client(timeout=30, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as client:
            while any(t.is_alive() for t in attackers) and len(latencies) < 200:
                start = time.perf_counter()
                assert client.get(url + "health").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.02)
        done.set()
        for thread in attackers:
            thread.join()
    assert len(latencies) >= 5
    assert max(latencies) < 1.0, sorted(latencies)[-5:]  # it was 4.6 s when decoding ran on the event loop


def test_only_the_promised_formats_are_decoded():
    from mnistlab.serving.preprocess import BadImageError, ImageTooLargeError, open_image

    buffer = io.BytesIO()
    Image.new("L", (40, 40), 255).save(buffer, format="PPM")  # a format PIL knows but the README does not promise
    with pytest.raises(BadImageError, match="not a PNG, JPG"):
        open_image(buffer.getvalue())
    with pytest.raises(ImageTooLargeError, match="MB to decode"):
        open_image(huge_16bit_png(), max_decoded_mb=8)


# -- 7 and 8. non-finite values, and an export that would overwrite its input -----------------------------
def nan_checkpoint(path: Path) -> Path:
    write_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    key = next(k for k in checkpoint["state_dict"] if k.startswith("net.") and k.endswith("weight"))
    checkpoint["state_dict"][key][0] = float("nan")
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("command", ["predict", "export", "evaluate"])
def test_non_finite_weights_are_refused(command, command_error, tmp_path):
    ckpt = nan_checkpoint(tmp_path / "nan.ckpt")
    Image.new("L", (28, 28), 0).save(tmp_path / "digit.png")
    args = [f"ckpt_path={ckpt}", f"inputs={tmp_path}"] if command == "predict" else [f"ckpt_path={ckpt}"]
    message = command_error(command, *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert "holds weights that are not finite numbers" in message
    assert not list(tmp_path.glob("nan.onnx"))


def test_images_with_non_finite_pixels_are_one_error_line_and_json_stays_valid(tmp_path):
    ckpt = write_checkpoint(tmp_path / "best.ckpt")
    pixels = np.full((28, 28), np.nan, dtype=np.float32)
    Image.fromarray(pixels, mode="F").save(tmp_path / "nan.tiff")
    Image.new("L", (28, 28), 0).save(tmp_path / "blank.png")
    result = run_cli("mnistlab.predict", f"ckpt_path={ckpt}", f"inputs={tmp_path}", "output=json", check=False)
    assert result.returncode == 1
    results = json.loads(result.stdout)  # valid JSON: no bare NaN
    assert "not finite" in next(r["error"] for r in results if r["file"].endswith("nan.tiff"))


def test_export_never_overwrites_its_own_checkpoint(command_error, tmp_path):
    ckpt = write_checkpoint(tmp_path / "best.ckpt")
    before = ckpt.read_bytes()
    assert "is the checkpoint itself" in command_error("export", f"ckpt_path={ckpt}", f"output={ckpt}")
    assert ckpt.read_bytes() == before


# -- 9. data checked when it is read ----------------------------------------------------------------------
def test_labels_out_of_range_and_mismatched_shapes_fail_when_the_data_is_read(tmp_path):
    from mnistlab.core.errors import DataError
    from mnistlab.data import create_datamodule

    root = write_tiny_dataset(tmp_path / "labels")
    raw = root / "MNIST" / "raw"
    labels = np.arange(600) % 10
    labels[7] = 12
    write_idx(raw / "train-labels-idx1-ubyte", labels.astype(np.uint8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte has label 12, outside 0\.\.9"):
        create_datamodule({"dataset": "mnist", "data_dir": str(root), "val_size": 100}).setup("fit")

    root = write_tiny_dataset(tmp_path / "shapes")
    write_idx(root / "MNIST" / "raw" / "t10k-images-idx3-ubyte", np.zeros((200, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.*shape \(1, 32, 32\), not \(1, 28, 28\)"):
        create_datamodule({"dataset": "mnist", "data_dir": str(root), "val_size": 100}).setup("fit")


def test_an_extended_schedule_continues_from_the_step_reached():
    from mnistlab.tasks.optim import build_optimizer, build_scheduler, continue_schedule

    for name in ("cosine", "onecycle"):
        params = [torch.nn.Parameter(torch.zeros(2))]
        settings = {"name": name, "interval": "step"}
        old = build_scheduler(build_optimizer(params, {"name": "sgd"}, 0.5), settings, 0.5, lambda _: 10)["scheduler"]
        for _ in range(10):
            old.optimizer.step()
            old.step() if old.last_epoch < 9 else None
        extended = build_scheduler(old.optimizer, settings, 0.5, lambda _: 20)["scheduler"]
        continue_schedule(extended, old.last_epoch)
        reference = build_scheduler(build_optimizer(params, {"name": "sgd"}, 0.5), settings, 0.5, lambda _: 20)
        for _ in range(old.last_epoch):
            reference["scheduler"].optimizer.step()
            reference["scheduler"].step()
        assert extended.get_last_lr() == pytest.approx(reference["scheduler"].get_last_lr()), name


def test_a_resume_cannot_change_the_optimizer(finished_run, command_error, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    assert "optim.name='sgd' is not the run's 'adamw'" in command_error("train", f"resume={run_dir}", "optim=sgd")
    assert metrics(run_dir) == metrics(finished_run)


def test_records_of_the_wrong_shape_are_unreadable_and_interrupts_pickle(tmp_path):
    import pickle

    from mnistlab.core.errors import Interrupted
    from mnistlab.core.record import read_record as read_metrics

    for text in ('{"hparams": []}', '{"val/acc_best": "x"}', "[1, 2]", '{"status": 3}'):
        (tmp_path / "metrics.json").write_text(text)
        assert read_metrics(tmp_path)["status"] == "unreadable", text
    stop = pickle.loads(pickle.dumps(Interrupted(signal.SIGTERM)))
    assert isinstance(stop, Interrupted) and stop.name == "SIGTERM"
