"""The mission's ablation matrix end to end: `experiment=ablation` (optimizer × BatchNorm × Dropout × activation ×
init, 72 runs of the CNN) at 1 epoch a run, with its sweep report, one job at a time (Hydra's basic launcher, all
cores) and with `hydra/launcher=joblib` (one job per core, `speed.threads` shared out). Wall time and jobs per
minute of each, and their ratio; the report's factor table is checked to name the five factors.

    python bench/ablation_matrix.py [--small]   # --small: a 2×2 corner of the matrix, to try the bench itself

It takes about half an hour on 2 cores, so `make bench` does not run it; run it by name.
"""

from __future__ import annotations

import argparse
import os

from common import check, row, run_mnistlab

FACTORS = ("optim", "norm", "dropout", "activation", "init")  # as the report names them
SMALL = ["optim=sgd,adam", "model.norm=none,batch", "model.dropout=0.3", "model.activation=relu", "model.init=default"]


def main(small: bool = False) -> bool:
    cores = len(os.sched_getaffinity(0))
    overrides = ["experiment=ablation", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
    if small:
        overrides += SMALL
    jobs = 4 if small else 72
    sequential, seq_dir = run_mnistlab(*overrides, multirun=True)
    parallel, par_dir = run_mnistlab(*overrides, "hydra/launcher=joblib", multirun=True)
    print(f"experiment=ablation, {jobs} runs of 1 epoch, {cores} cores, report included")
    row("one job at a time, all cores (basic launcher)", sequential, "s")
    row(f"hydra/launcher=joblib ({cores} jobs at once)", parallel, "s")
    row("jobs per minute, sequential", 60 * jobs / sequential, "jobs/min")
    row("jobs per minute, joblib", 60 * jobs / parallel, "jobs/min")
    row("joblib / sequential", sequential / parallel, "x")
    ok = True
    for sweep_dir in (seq_dir, par_dir):
        report = (sweep_dir / "report.md").read_text()
        varied = next((line for line in report.splitlines() if "Factors varied:" in line), "")
        completed = sum(1 for p in sweep_dir.glob("*/metrics.json") if '"completed"' in p.read_text())
        ok = check(f"{sweep_dir.name}: {completed} of {jobs} runs completed", completed == jobs) and ok
        swept = FACTORS if not small else FACTORS[:2]
        ok = check(f"{sweep_dir.name}: the report's factors are the swept ones", all(f in varied for f in swept)) and ok
    return ok


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="a 2×2 corner of the matrix")
    raise SystemExit(0 if main(parser.parse_args().small) else 1)
