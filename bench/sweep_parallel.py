"""A 16-job sweep of the small CNN (``model=cnn_small``, 1 epoch each of the 55k training images) on this
machine: one job at a time with all cores (Hydra's basic launcher), against ``hydra/launcher=joblib`` (one job
per core, each with ``speed.threads`` shared out automatically: 1 on 2 cores). Sweep throughput, jobs per
minute. Target: >= 1.3x.

Both sweeps are whole commands (start-up, every job, the sweep report).
"""

from __future__ import annotations

import os

from common import check, row, run_mnistlab

SWEEP = [
    "model=cnn_small",
    "data=mnist",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "optim=sgd,adam",
    "model.norm=none,batch",
    "model.dropout=0.0,0.1,0.2,0.3",
]
JOBS = 16


def main() -> bool:
    cores = len(os.sched_getaffinity(0))
    # one round of each (a round is minutes on 2 cores); the parallel sweep runs second, on a warm file cache
    sequential, _ = run_mnistlab(*SWEEP, multirun=True)
    parallel, _ = run_mnistlab(*SWEEP, "hydra/launcher=joblib", multirun=True)
    print(f"{JOBS}-job sweep of the small CNN (1 epoch each), {cores} cores")
    row("one job at a time, all cores (basic launcher)", sequential, "s")
    row(f"hydra/launcher=joblib ({cores} jobs at once, 1 thread each)", parallel, "s")
    row("jobs per minute, sequential", 60 * JOBS / sequential, "jobs/min")
    row("jobs per minute, joblib", 60 * JOBS / parallel, "jobs/min")
    row("sweep throughput, joblib / sequential", sequential / parallel, "x")
    return check("joblib sweep throughput >= 1.3x sequential", sequential / parallel >= 1.3)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
