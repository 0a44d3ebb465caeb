"""CNN `cnn_bn_do`, SGD momentum 0.9, batch 64, one epoch of the 55k train split, on this CPU.

(a) hand-written loop over in-memory tensors, (b) the reference scripts' torchvision + DataLoader loop,
(c) mnistlab through `python -m mnistlab.train`, (d) the hand loop with mnistlab's tricks (no bias before BN,
channels-last, fused SGD, inputs normalized once): the physical floor. (a), (c) and (d) alternate for three
rounds and the best epoch of each is compared: the hand loop's speed alone has varied by 40 % between runs on
this shared machine. Targets: c/a >= 1.3; mnistlab's epoch time <= 1.10x the floor's (d/c <= 1.10).
"""

from __future__ import annotations

import torch
from common import (
    TRAIN_ONLY,
    check,
    hand_loop_epoch,
    metrics,
    reference_cnn,
    reference_loop_epoch,
    row,
    run_mnistlab,
    train_val_tensors,
    tuned_cnn,
    tuned_hand_loop_epoch,
)

BATCH = 64
ROUNDS = 3


def sgd(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9)


def fused_sgd(params):
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, fused=True)


def main() -> bool:
    images, labels = train_val_tensors()
    n = len(labels)
    print(
        f"CNN cnn_bn_do, SGD momentum, batch {BATCH}, {n} images, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    hand_runs, our_runs, floor_runs = [], [], []
    for _ in range(ROUNDS):  # alternated, so that a slow spell of this shared machine hits both sides
        torch.manual_seed(0)
        hand_runs.append(n / hand_loop_epoch(reference_cnn(), sgd, images, labels, BATCH))
        _, run = run_mnistlab(
            "model=cnn_bn_do",
            "optim=sgd_momentum",
            "optim.lr=0.01",
            f"data.batch_size={BATCH}",
            "trainer.max_epochs=1",
            *TRAIN_ONLY,
        )
        our_runs.append(n / metrics(run)["train_time_s"])
        torch.manual_seed(0)
        floor_runs.append(n / tuned_hand_loop_epoch(tuned_cnn(), fused_sgd, images, labels, BATCH))
    torch.manual_seed(0)
    reference_loop = n / reference_loop_epoch(reference_cnn(), sgd, BATCH)
    hand, ours = max(hand_runs), max(our_runs)  # the best epoch of each: the least disturbed by other load
    floor = max(floor_runs)
    print(
        f"  rounds: hand {[round(v) for v in hand_runs]} img/s, mnistlab {[round(v) for v in our_runs]} img/s, "
        f"tuned hand {[round(v) for v in floor_runs]} img/s"
    )
    row("(a) hand-written loop, in-memory tensors (best round)", hand, "img/s")
    row("(b) reference-scripts loop, torchvision + DataLoader", reference_loop, "img/s")
    row("(c) mnistlab (python -m mnistlab.train) (best round)", ours, "img/s")
    row("(d) hand loop with the same tricks (best round)", floor, "img/s")
    row("c/a", ours / hand, "x")
    row("c/b", ours / reference_loop, "x")
    row("mnistlab epoch time / tuned hand loop's (d/c)", floor / ours, "x")
    ok = check("c/a >= 1.3", ours / hand >= 1.3)
    return check("mnistlab epoch <= 1.10x the tuned hand loop's", floor / ours <= 1.10) and ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
