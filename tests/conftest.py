"""Fixtures shared by the test modules: tiny data sets, a trained tiny run, and commands run in this process.
Helpers that are not fixtures live in ``tests/helpers/``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.cli import FAST, run_cli
from helpers.data import write_tiny_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with tiny MNIST and Fashion-MNIST in torchvision's layout."""
    root = tmp_path_factory.mktemp("data")
    write_tiny_dataset(root, "MNIST")
    write_tiny_dataset(root, "FashionMNIST", seed=1)
    return root


@pytest.fixture(scope="session")
def cnn_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run of the default recipe (CNN, MNIST, one-cycle, label smoothing, EMA) for 2 epochs on tiny
    data, shared by the tests that read a run or its checkpoints. Copy it before changing anything in it."""
    run_dir = tmp_path_factory.mktemp("cnn_run") / "run"
    run_cli("mnistlab.train", *FAST, "model=cnn", "data=mnist", f"hydra.run.dir={run_dir}", data_dir=tiny_data)
    return run_dir


@pytest.fixture
def command_error(tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``command_error("train", "optim.lr=0")``: the one error line the command prints for this input, checked
    in this process (from ``tmp_path``, on ``tiny_data``) with any training, server or NumPy training refused
    (``helpers.inprocess``)."""
    from helpers.inprocess import command_error as error
    from helpers.inprocess import refuse_real_work

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tiny_data))
    refuse_real_work(monkeypatch)
    return lambda command, *args: error(command, args)
