"""Tiny data sets in torchvision's IDX layout, and checkpoints made in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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


def write_checkpoint(
    path: Path,
    input_shape: tuple[int, int, int] = (1, 28, 28),
    classes: list[str] | None = None,
    data: dict | None = None,
    seed: int = 0,
    model: dict | None = None,
) -> Path:
    """A checkpoint as mnistlab.train writes it (hyper_parameters, state_dict, run config), with a small CNN
    (or ``model``) at random weights: enough for everything that does not need a trained model, and made in
    milliseconds."""
    import torch

    from mnistlab.tasks.classification import ClassificationTask

    torch.manual_seed(seed)
    classes = classes or [str(i) for i in range(10)]
    hparams = {
        "model": model or {"name": "cnn", "channels": [8, 16], "fc": [32], "norm": "batch"},
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
