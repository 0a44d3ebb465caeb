"""Speed when another process takes a core: the CNN epoch and `experiment=fast`, idle and beside a busy-loop
process, with mnistlab's default threads (they follow the load), one thread (`speed.threads=1`) and every core
fixed (`speed.threads=<cores>`, what torch does by itself).

The busy loop is one Python process spinning on one core, started and stopped by this bench. Configurations
alternate within each round, so that a slow spell of this shared machine hits all of them. Figures: median
seconds per configuration; targets: under load, default / one thread <= 1.05; idle, default / all cores <= 1.05.

    python bench/threads_under_load.py [--rounds 3] [--only cnn|fast]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

from common import TRAIN_ONLY, check, metrics, row, run_mnistlab

CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
WORKLOADS = {
    "CNN epoch (cnn_bn_do, train loop only)": (["model=cnn_bn_do", "trainer.max_epochs=1", *TRAIN_ONLY], "train"),
    "experiment=fast (whole command)": (["experiment=fast"], "wall"),
}
THREADS = {"default": [], "1 thread": ["speed.threads=1"], f"{CORES} threads": [f"speed.threads={CORES}"]}


def spin(stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    while not stop.is_set():
        for _ in range(100_000):
            pass


def measure(overrides: list[str], what: str) -> float:
    wall, run = run_mnistlab(*overrides)
    return wall if what == "wall" else float(metrics(run)["train_time_s"])


def main(rounds: int = 3, only: str | None = None) -> bool:
    chosen = [w for w in WORKLOADS if only is None or only in w.lower()]
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.pop(name, None)  # the bench measures what a user gets
    print(f"{CORES} cores; idle = nothing else started by this bench; busy = one spinning process beside the run")
    times: dict[tuple[str, str, str], list[float]] = {}
    for round_ in range(rounds):
        for load in ("idle", "busy"):
            stop = multiprocessing.Event()
            spinner = multiprocessing.Process(target=spin, args=(stop,), daemon=True) if load == "busy" else None
            if spinner:
                spinner.start()
                time.sleep(0.5)
            try:
                for workload, (overrides, what) in WORKLOADS.items():
                    if workload not in chosen:
                        continue
                    labels = list(THREADS)
                    for label in labels[round_ % 3 :] + labels[: round_ % 3]:  # each round starts with another
                        extra = THREADS[label]
                        times.setdefault((workload, load, label), []).append(measure([*overrides, *extra], what))
            finally:
                if spinner:
                    stop.set()
                    spinner.join(5)
    ok = True
    for workload in chosen:
        print(workload)
        for load in ("idle", "busy"):
            for label in THREADS:
                runs = times[(workload, load, label)]
                row(f"{load}, {label} (rounds {', '.join(f'{t:.1f}' for t in runs)})", statistics.median(runs), "s")
        med = {key: statistics.median(v) for key, v in times.items() if key[0] == workload}
        busy_ratio = med[(workload, "busy", "default")] / med[(workload, "busy", "1 thread")]
        idle_ratio = med[(workload, "idle", "default")] / med[(workload, "idle", f"{CORES} threads")]
        collapse = med[(workload, "busy", f"{CORES} threads")] / med[(workload, "busy", "1 thread")]
        row("busy: default / 1 thread", busy_ratio, "x")
        row(f"busy: {CORES} threads fixed / 1 thread (the collapse avoided)", collapse, "x")
        row(f"idle: default / {CORES} threads fixed", idle_ratio, "x")
        ok = check(f"{workload}: busy default <= 1.05x one thread", busy_ratio <= 1.05) and ok
        ok = check(f"{workload}: idle default <= 1.05x all cores", idle_ratio <= 1.05) and ok
    return ok


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["cnn", "fast"], help="one workload only")
    args = parser.parse_args()
    raise SystemExit(0 if main(args.rounds, args.only) else 1)
