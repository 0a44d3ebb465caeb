"""logger=wandb and logger=trackio, offline: one 2-job sweep logging to both, read back through each library's
own reader (W&B's offline transaction logs, trackio's local store) and compared with the runs' metrics.json."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers.cli import FAST, run_cli

from mnistlab.core.extras import installed

# a few batches: accuracies well below 1, so that equal numbers mean the same run's numbers
SWEEP = ["-m", "optim=sgd,adam", *FAST, "trainer.max_epochs=1", "trainer.limit_train_batches=3"]
NAMES = {"0": "optim=sgd", "1": "optim=adam"}
METRICS = ("val/acc_best", "test/acc", "test/f1", "test/loss")
TRACKERS = [name for name in ("wandb", "trackio") if installed(name)]


def offline_env(home: Path) -> dict[str, str]:
    """No W&B, trackio or Hugging Face settings of the machine's user: an empty home, none of their variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "TRACKIO_", "HF_"))}
    env.update(HOME=str(home), NETRC=str(home / ".netrc"), HF_HUB_OFFLINE="1")
    return env


@dataclass
class Sweep:
    root: Path  # the directory the command ran from
    sweep_dir: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess
    records: dict[str, dict[str, Any]]  # metrics.json of each job, by job number


@pytest.fixture(scope="module")
def sweep(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """``-m logger=[wandb,trackio] optim=sgd,adam`` (the trackers installed) from an empty directory."""
    if not TRACKERS:
        pytest.skip("neither the [wandb] nor the [trackio] extra is installed")
    root = tmp_path_factory.mktemp("trackers")
    env = offline_env(root / "home")
    sweep_dir = root / "sweep"
    loggers = f"logger=[{','.join(TRACKERS)}]"  # Hydra's list of a group's options: both at once
    result = run_cli(
        "mnistlab.train", *SWEEP, loggers, f"hydra.sweep.dir={sweep_dir}", data_dir=tiny_data, cwd=root, env=env
    )
    records = {d.name: json.loads((d / "metrics.json").read_text()) for d in sweep_dir.iterdir() if d.name.isdigit()}
    assert sorted(records) == ["0", "1"] and all(r["status"] == "completed" for r in records.values())
    assert all(0 < r["test/acc"] < 1 for r in records.values())
    return Sweep(root, sweep_dir, env, result, records)


def read_with(script: str, arg: str, env: dict[str, str]) -> Any:
    """What ``script`` (a reader run in a fresh interpreter) prints as JSON."""
    read = subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True, env=env, timeout=60)
    assert read.returncode == 0, read.stderr[-3000:]
    return json.loads(read.stdout)


# An offline run's transaction log (run-<id>.wandb), read as `wandb sync` reads it: W&B's leveldb-log framing
# (the format of wandb.sdk.internal.datastore, which wandb 0.31 no longer ships in Python), checksums verified, and
# each record parsed with W&B's own protobuf schema (wandb.proto.wandb_internal_pb2.Record).
READ_WANDB = r"""
import json, struct, sys, zlib
from wandb.proto import wandb_internal_pb2

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def chunks(data):  # the leveldb-log chunks: (type, payload)
    assert data[:HEADER] == struct.pack("<4sHB", b":W&B", 0xBEE1, 0), "not a W&B transaction log"
    index = HEADER
    while index + HEADER <= len(data):
        if BLOCK - index % BLOCK < HEADER:  # the block's zero padding
            index += BLOCK - index % BLOCK
            continue
        checksum, length, kind = struct.unpack_from("<IHB", data, index)
        payload = data[index + HEADER : index + HEADER + length]
        assert zlib.crc32(payload, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF == checksum, "corrupt record"
        index += HEADER + length
        yield kind, payload


def records(path):
    buffer = b""
    for kind, payload in chunks(open(path, "rb").read()):
        buffer = payload if kind in (FULL, FIRST) else buffer + payload
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buffer)
            yield record


def key(item):
    return item.key or "/".join(item.nested_key)


run, config, history, summary, exit_code = {}, {}, [], {}, None
for record in records(sys.argv[1]):
    kind = record.WhichOneof("record_type")
    if kind == "run":
        run = {"name": record.run.display_name, "group": record.run.run_group, "project": record.run.project}
        config.update({key(i): json.loads(i.value_json) for i in record.run.config.update})
    elif kind == "config":
        config.update({key(i): json.loads(i.value_json) for i in record.config.update})
    elif kind == "history":
        history.append({key(i): json.loads(i.value_json) for i in record.history.item})
    elif kind == "summary":
        summary.update({key(i): json.loads(i.value_json) for i in record.summary.update})
    elif kind == "exit":
        exit_code = record.exit.exit_code
print(json.dumps({"run": run, "config": config, "history": history, "summary": summary, "exit_code": exit_code}))
"""


def test_wandb_runs_are_offline_in_their_run_dirs_with_hparams_metrics_names_and_group(sweep):
    pytest.importorskip("wandb", reason="the [wandb] extra is not installed")
    assert not (sweep.root / "wandb").exists()  # nothing in the directory the command ran from
    for job, record in sweep.records.items():
        job_dir = sweep.sweep_dir / job
        (transactions,) = job_dir.glob("wandb/offline-run-*/run-*.wandb")  # offline: no key, no WANDB_MODE
        run = read_with(READ_WANDB, str(transactions), sweep.env)
        assert run["run"] == {"name": NAMES[job], "group": "sweep", "project": "mnistlab"}
        config = run["config"]
        assert config.pop("run_dir") == str(job_dir)
        assert {k: v for k, v in config.items() if not k.startswith("_")} == record["hparams"]  # less W&B's _wandb
        for key in METRICS:
            logged = [row[key] for row in run["history"] if key in row]
            assert logged and logged[-1] == pytest.approx(record[key], rel=1e-6), key
            assert run["summary"][key] == pytest.approx(record[key], rel=1e-6), key
        assert run["exit_code"] == 0  # finished when its job ended, as completed
        assert f"wandb sync {transactions.parent}" in (job_dir / "train.log").read_text()  # how to upload it


READ_TRACKIO = r"""
import json, sys
import trackio
from trackio.sqlite_storage import SQLiteStorage

runs = {}
for run in trackio.Api().runs(sys.argv[1]):
    runs[run.name] = {"config": run.config, "logs": SQLiteStorage.get_logs(sys.argv[1], run.name, run_id=run.id)}
print(json.dumps(runs, default=str))
"""


def test_trackio_runs_are_in_a_local_store_with_hparams_metrics_names_and_group(sweep):
    pytest.importorskip("trackio", reason="the [trackio] extra is not installed")
    store = sweep.root / "trackio"
    assert (store / "mnistlab.db").is_file() and not (sweep.root / "home" / ".cache" / "huggingface").exists()
    runs = read_with(READ_TRACKIO, "mnistlab", {**sweep.env, "TRACKIO_DIR": str(store)})
    assert set(runs) == set(NAMES.values())
    for job, record in sweep.records.items():
        run = runs[NAMES[job]]
        config = run["config"]
        assert config.pop("run_dir") == str(sweep.sweep_dir / job)
        assert config.pop("_Group") == "sweep"
        assert {k: v for k, v in config.items() if not k.startswith("_")} == record["hparams"]  # less _Created…
        for key in METRICS:
            logged = [row[key] for row in run["logs"] if key in row]
            assert logged and logged[-1] == pytest.approx(record[key], rel=1e-6), key
        assert "trackio show --project mnistlab" in (sweep.sweep_dir / job / "train.log").read_text()
    # trackio's own notices are left out: where the store is is one line of the run's log
    assert not re.search(r"^\* (Trackio|Created new run|View dashboard|Run finished)", sweep.result.stdout, re.M)


def test_wandb_is_offline_unless_the_user_logged_in_or_chose_a_mode(tmp_path, monkeypatch):
    from mnistlab.training.tracker_runs import wandb_mode

    for name in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(name)
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    assert wandb_mode(None) == "offline"  # no key anywhere
    assert wandb_mode("online") == "online" and wandb_mode("disabled") == "disabled"  # logger.wandb.mode
    netrc.write_text("machine api.wandb.ai\n  login user\n  password k3y\n")
    netrc.chmod(0o600)
    assert wandb_mode(None) is None  # `wandb login` was run: W&B's own default (online)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert wandb_mode(None) == "offline"  # a key for another server does not count
    monkeypatch.setenv("WANDB_API_KEY", "k3y")
    assert wandb_mode(None) is None
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert wandb_mode(None) is None  # W&B reads WANDB_MODE itself


FAIL_IN_WANDB = r"""
import sys
from mnistlab.training.trackers import WandbLogger

logger = WandbLogger(name="crashed", save_dir=sys.argv[1])
logger.log_metrics({"train/loss": 1.5, "epoch": 0}, step=3)
logger.finalize("failed")  # what Lightning calls when training raises
"""


def test_a_run_that_fails_is_finished_as_failed_in_wandb(tmp_path):
    pytest.importorskip("wandb", reason="the [wandb] extra is not installed")
    env = offline_env(tmp_path / "home")
    subprocess.run([sys.executable, "-c", FAIL_IN_WANDB, str(tmp_path)], check=True, env=env, cwd=tmp_path, timeout=120)
    (transactions,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    run = read_with(READ_WANDB, str(transactions), env)
    assert run["run"]["name"] == "crashed" and run["run"]["group"] == ""  # outside a sweep: no group
    assert [row["train/loss"] for row in run["history"] if "train/loss" in row] == [1.5]
    assert not any("epoch" in row for row in run["history"])  # the metrics TensorBoard gets
    assert run["exit_code"] == 1
