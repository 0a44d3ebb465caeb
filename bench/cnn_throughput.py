"""CNN `cnn_bn_do`, SGD momentum 0.9, batch 64, one epoch of the 55k train split, on this CPU.

(a) hand-written loop over in-memory tensors, (b) the seeds' torchvision + DataLoader loop,
(c) mnistlab through `python -m mnistlab.train`. Target: c/a >= 1.3.
"""

from __future__ import annotations

import torch
from common import (
    TRAIN_ONLY,
    check,
    hand_loop_epoch,
    metrics,
    row,
    run_mnistlab,
    seed_cnn,
    seed_style_epoch,
    train_val_tensors,
)

BATCH = 64


def sgd(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


def main() -> bool:
    images, labels = train_val_tensors()
    n = len(labels)
    print(
        f"CNN cnn_bn_do, SGD momentum, batch {BATCH}, {n} images, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    torch.manual_seed(0)
    hand = n / hand_loop_epoch(seed_cnn(), sgd, images, labels, BATCH)
    torch.manual_seed(0)
    seed_style = n / seed_style_epoch(seed_cnn(), sgd, BATCH)
    _, run = run_mnistlab(
        "model=cnn_bn_do",
        "optim=sgd_momentum",
        "optim.lr=0.01",
        f"data.batch_size={BATCH}",
        "trainer.max_epochs=1",
        *TRAIN_ONLY,
    )
    ours = n / metrics(run)["train_time_s"]
    row("(a) hand-written loop, in-memory tensors", hand, "img/s")
    row("(b) seed-style loop, torchvision + DataLoader", seed_style, "img/s")
    row("(c) mnistlab (python -m mnistlab.train)", ours, "img/s")
    row("c/a", ours / hand, "x")
    row("c/b", ours / seed_style, "x")
    return check("c/a >= 1.3", ours / hand >= 1.3)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
