"""Per-job overhead inside an 8-job `--multirun`: everything but the train/val/test loops.

Jobs 2..8 run in the same process as job 1, which pays the imports and reads the data once. A job's
overhead is the time since the previous job finished minus its own loop time. Target: <= 1 s.
"""

from __future__ import annotations

import itertools
import statistics

from common import check, metrics, row, run_mnistlab


def main() -> bool:
    wall, sweep = run_mnistlab(
        "model=cnn",
        "data=mnist",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "optim=sgd,adam",
        "model.norm=none,batch",
        "model.dropout=0.0,0.3",
        multirun=True,
    )
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    results = [metrics(job) for job in jobs]
    overheads = []
    for previous, current in itertools.pairwise(results):
        loops = current["train_time_s"] + current.get("test_time_s", 0.0)
        overheads.append(current["finished_at"] - previous["finished_at"] - loops)
    print(f"8-job sweep of the CNN (5 train batches, 1 val and 1 test batch each), {wall:.1f} s in all")
    row("job 1 (imports, data read once)", results[0]["wall_time_s"], "s")
    row("per-job overhead of jobs 2-8, median", statistics.median(overheads), "s")
    row("per-job overhead of jobs 2-8, max", max(overheads), "s")
    return check("median per-job overhead <= 1 s", statistics.median(overheads) <= 1.0)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
