"""lightning-hydra-template's MLP (784-64-128-64-10, BatchNorm), Adam, batch 128, 55k images.

Target: mnistlab's epoch time <= 1.5 × the hand-written loop over in-memory tensors.
"""

from __future__ import annotations

import torch
from common import (
    TRAIN_ONLY,
    check,
    hand_loop_epoch,
    lht_mlp,
    metrics,
    reference_loop_epoch,
    row,
    run_mnistlab,
    train_val_tensors,
)

BATCH, EPOCHS = 128, 5


def adam(params):
    return torch.optim.Adam(params, lr=1e-3)


def main() -> bool:
    images, labels = train_val_tensors()
    print(f"MLP 784-64-128-64-10 + BN, Adam, batch {BATCH}, {len(labels)} images, mean of {EPOCHS} epochs")
    torch.manual_seed(0)
    hand = hand_loop_epoch(lht_mlp(), adam, images, labels, BATCH, epochs=EPOCHS)
    torch.manual_seed(0)
    reference_loop = reference_loop_epoch(lht_mlp(), adam, BATCH, limit=100)
    _, run = run_mnistlab(
        "model=mlp",
        "model.hidden=[64,128,64]",
        "model.norm=batch",
        "optim=adam",
        f"data.batch_size={BATCH}",
        f"trainer.max_epochs={EPOCHS}",
        *TRAIN_ONLY,
    )
    ours = metrics(run)["time_per_epoch_s"]
    row("(a) hand-written loop, in-memory tensors", hand, "s/epoch")
    row("(b) reference-scripts loop, torchvision + DataLoader (100 batches, scaled)", reference_loop, "s/epoch")
    row("(c) mnistlab (python -m mnistlab.train)", ours, "s/epoch")
    row("c/a (time)", ours / hand, "x")
    row("b/c (speed-up over the reference-scripts loop)", reference_loop / ours, "x")
    return check("c/a <= 1.5", ours / hand <= 1.5)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
