"""Shared pieces of the benches: real MNIST, the hand-written baselines, running mnistlab's own CLI.

Every bench measures its baseline in the same run, on the same data, and prints ratios.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def data_dir() -> Path:
    """MNISTLAB_DATA_DIR, else ../shared/datasets, else <repo>/data; must hold MNIST/raw."""
    for candidate in (os.environ.get("MNISTLAB_DATA_DIR"), REPO.parent / "shared" / "datasets", REPO / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    sys.exit("bench: no MNIST found; set MNISTLAB_DATA_DIR to a folder holding MNIST/raw/")


def train_val_tensors(val_size: int = 5000, seed: int = 42) -> tuple[torch.Tensor, torch.Tensor]:
    """The 55k train split mnistlab uses, as uint8 images and int64 labels."""
    from mnistlab.data.mnist import load_split
    from mnistlab.data.splits import stratified_split

    images, labels = load_split(data_dir() / "MNIST" / "raw", "train")
    train_idx, _ = stratified_split(labels, val_size, seed, "val_size")
    return images[train_idx], labels[train_idx]


def reference_cnn(conv_bias: bool = True) -> nn.Module:
    """The CNN of the benchmark as a user writes it (NCHW, conv biases kept)."""
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=conv_bias),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=conv_bias),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.3),
        nn.Linear(64 * 7 * 7, 128),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Linear(128, 10),
    )


def tuned_cnn() -> nn.Module:
    """The same CNN as a performance-minded user writes it, with mnistlab's tricks: no conv bias before BatchNorm
    (its shift makes it redundant), channels-last memory format (oneDNN's fast path)."""
    return reference_cnn(conv_bias=False).to(memory_format=torch.channels_last)


def tuned_hand_loop_epoch(
    model: nn.Module, make_optimizer: Callable, images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> float:
    """Seconds per epoch of the hand loop with mnistlab's tricks: inputs normalized once and stored
    channels-last, batches sliced from memory, a fused optimizer step, gradients set to None."""
    x = ((images.float() / 255 - 0.1307) / 0.3081).contiguous(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    order = torch.randperm(len(labels))
    for i in range(0, len(labels), batch_size):
        idx = order[i : i + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), labels[idx])
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def lht_mlp() -> nn.Module:
    """lightning-hydra-template's SimpleDenseNet: 784-64-128-64-10 with BatchNorm."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 64),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Linear(64, 128),
        nn.BatchNorm1d(128),
        nn.ReLU(),
        nn.Linear(128, 64),
        nn.BatchNorm1d(64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def hand_loop_epoch(
    model: nn.Module,
    make_optimizer: Callable,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    epochs: int = 1,
) -> float:
    """Seconds per epoch of a hand-written loop over in-memory, pre-normalized float tensors."""
    x = (images.float() / 255 - 0.1307) / 0.3081
    optimizer = make_optimizer(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels))
        for i in range(0, len(labels), batch_size):
            idx = order[i : i + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), labels[idx])
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - start) / epochs


def reference_loop_epoch(
    model: nn.Module, make_optimizer: Callable, batch_size: int, limit: int | None = None
) -> float:
    """Seconds per epoch of the reference scripts' loop: torchvision MNIST + ToTensor + Normalize + DataLoader
    (PIL per image).

    Uses the same 55k samples; ``limit`` batches only, scaled to the full epoch, when given.
    """
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    from mnistlab.data.splits import stratified_split

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    full = datasets.MNIST(str(data_dir()), train=True, download=False, transform=transform)
    train_idx, _ = stratified_split(full.targets, 5000, 42, "val_size")
    loader = DataLoader(Subset(full, train_idx.tolist()), batch_size=batch_size, shuffle=True)
    optimizer = make_optimizer(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    batches = 0
    start = time.perf_counter()
    for images, labels in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        batches += 1
        if limit is not None and batches >= limit:
            break
    elapsed = time.perf_counter() - start
    return elapsed * len(loader) / batches


def run_mnistlab(*overrides: str, multirun: bool = False) -> tuple[float, Path]:
    """Run ``python -m mnistlab.train`` in a fresh process; returns (wall seconds, run or sweep dir)."""
    out = Path(tempfile.mkdtemp(prefix="mnistlab-bench-"))
    dir_arg = f"hydra.sweep.dir={out}" if multirun else f"hydra.run.dir={out}"
    cmd = [
        sys.executable,
        "-m",
        "mnistlab.train",
        *(["--multirun"] if multirun else []),
        *overrides,
        dir_arg,
        "trainer.enable_model_summary=false",
    ]
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(data_dir())}
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return wall, out


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def over_seeds(seeds: tuple[int, ...], *overrides: str) -> tuple[list[float], list[float], list[float]]:
    """``python -m mnistlab.train seed=<s> …`` once per seed, printing each run's test/acc, training time and
    whole-command time, then the mean and lowest test/acc; returns (test/acc, whole-command seconds, seconds of
    training) lists."""
    accs, walls, train_times = [], [], []
    for seed in seeds:
        wall, run = run_mnistlab(f"seed={seed}", *overrides)
        result = metrics(run)
        accs.append(result["test/acc"])
        walls.append(wall)
        train_times.append(result["train_time_s"])
        row(f"seed {seed}: test/acc (val/acc_best {100 * result['val/acc_best']:.2f} %)", 100 * result["test/acc"], "%")
        row(f"seed {seed}: {result['epochs']} epochs of training (train + val loops)", result["train_time_s"], "s")
        row(f"seed {seed}: whole command", wall, "s")
    row(f"mean test/acc over seeds {', '.join(map(str, seeds))}", 100 * sum(accs) / len(accs), "%")
    row("lowest test/acc", 100 * min(accs), "%")
    return accs, walls, train_times


# the training loop alone, doing what the hand loops do (no validation, schedule, averaged weights or smoothing)
TRAIN_ONLY = [
    "trainer.limit_val_batches=0",
    "trainer.num_sanity_val_steps=0",
    "test=false",
    "scheduler=none",
    "data=mnist",
    "ema.decay=null",
    "loss.label_smoothing=0.0",
]


def row(name: str, value: float, unit: str) -> None:
    print(f"  {name:<58} {value:>10.2f} {unit}")


def check(label: str, ok: bool) -> bool:
    print(f"  {'PASS' if ok else 'FAIL'}  {label}")
    return ok


_FAST_CHECKPOINT: list[Path] = []


def fast_checkpoint() -> Path:
    """best.ckpt of `experiment=fast` (99 % MNIST), trained once per bench process; $MNISTLAB_SERVE_CKPT instead
    when set."""
    if os.environ.get("MNISTLAB_SERVE_CKPT"):
        return Path(os.environ["MNISTLAB_SERVE_CKPT"])
    if not _FAST_CHECKPOINT:
        _FAST_CHECKPOINT.append(run_mnistlab("experiment=fast")[1] / "checkpoints" / "best.ckpt")
    return _FAST_CHECKPOINT[0]
