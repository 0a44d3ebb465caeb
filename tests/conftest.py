"""Shared fixtures: tiny IDX datasets written by the tests themselves, and a CLI runner."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
_REAL_CANDIDATES = [
    os.environ.get("MNISTLAB_REAL_DATA"),
    os.environ.get("MNISTLAB_DATA_DIR"),
    REPO.parent / "shared" / "datasets",
]
# the real MNIST for the slow end-to-end tests: the first of these that holds MNIST/raw
REAL_DATA = next(
    (Path(c) for c in _REAL_CANDIDATES if c and (Path(c) / "MNIST" / "raw").is_dir()),
    REPO.parent / "shared" / "datasets",
)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format (magic 0x00 0x00 0x08 ndim, big-endian sizes)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """28×28 images a small CNN learns in a few steps: a bright 6×6 square whose place encodes the class."""
    images = rng.integers(0, 40, size=(len(labels), 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        top, left = 3 + row * 12, 1 + col * 5
        images[i, top : top + 6, left : left + 6] = 255
    return images


def write_tiny_dataset(root: Path, folder: str = "MNIST", n_train: int = 600, n_test: int = 200, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", make_images(labels, rng))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with tiny MNIST and Fashion-MNIST in torchvision's layout."""
    root = tmp_path_factory.mktemp("data")
    write_tiny_dataset(root, "MNIST")
    write_tiny_dataset(root, "FashionMNIST", seed=1)
    return root


# overrides that keep a CLI run on tiny data to a few seconds
FAST = [
    "trainer.max_epochs=2",
    "data.val_size=100",
    "data.batch_size=32",
    "data.eval_batch_size=100",
    "callbacks.progress_bar=null",
    "trainer.enable_model_summary=false",
    "trainer.num_sanity_val_steps=0",
]


def run_cli(
    module: str,
    *args: str,
    data_dir: Path | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: int = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if data_dir is not None:
        env["MNISTLAB_DATA_DIR"] = str(data_dir)
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{module} {' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def write_checkpoint(
    path: Path,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    classes: list[str] | None = None,
    data: dict | None = None,
    seed: int = 0,
) -> Path:
    """A checkpoint as mnistlab.train writes it (hyper_parameters, state_dict, run config), with a small CNN
    at random weights: enough for everything that does not need a trained model, and made in milliseconds."""
    import torch

    from mnistlab.tasks.classification import ClassificationTask

    torch.manual_seed(seed)
    classes = classes or [str(i) for i in range(10)]
    hparams = {
        "model": {"name": "cnn", "channels": [8, 16], "fc": [32], "norm": "batch"},
        "optim": {"name": "sgd", "lr": 0.1},
        "scheduler": {"name": "none"},
        "input_shape": list(input_shape),
        "num_classes": len(classes),
        "mean": [0.13] * input_shape[0],
        "std": [0.31] * input_shape[0],
        "classes": classes,
    }
    model = ClassificationTask(**hparams)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so that they must be exported
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    data_cfg = {"dataset": "mnist", **(data or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"hyper_parameters": hparams, "state_dict": model.state_dict(), "mnistlab": {"config": {"data": data_cfg}}},
        path,
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(ckpt: Path, *args: str) -> Iterator[str]:
    """``python -m mnistlab.serve`` on a free loopback port for the block; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mnistlab.serve", f"ckpt_path={ckpt}", f"port={port}", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise RuntimeError(f"the server did not start:\n{process.stdout.read().decode()[-3000:]}") from None
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=30)


def needs(*modules: str) -> pytest.MarkDecorator:
    """Skip a test when an optional extra it uses is not installed (a core install runs the core tests)."""
    from mnistlab.core.extras import EXTRA_OF, installed

    missing = [m for m in modules if not installed(m)]
    extras = ", ".join(sorted({f"[{EXTRA_OF.get(m, 'all')}]" for m in missing}))
    return pytest.mark.skipif(bool(missing), reason=f"the {extras} extra is not installed")
