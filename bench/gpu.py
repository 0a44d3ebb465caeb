"""The figures that need a CUDA device, each a whole ``python -m mnistlab.train`` command with ``trainer=gpu``
(16-mixed, cuDNN autotuning); without a device it says so and passes. Parts, all by default or those named:

  python bench/gpu.py                      # fast precision accurate best ablation placement
  python bench/gpu.py fast precision       # a subset (each part is minutes at most on one H100)

- fast: ``experiment=fast`` over seeds 1-3; goal mean test/acc >= 99.0 % in <= 2 s of training.
- precision: the same at ``trainer.precision=32-true``: training time and accuracy against 16-mixed.
- accurate: a 99.5 % recipe (the default CNN, one-cycle, batch 256, 8 epochs); goal >= 99.5 % in <= 10 s of
  training. A starting point: tune it on the device.
- best: ``experiment=best`` (seed 1), its wall time; goal test/acc >= 99.65 %.
- ablation: the 72-run ``experiment=ablation`` at 1 epoch each, one job at a time and 4 jobs sharing the GPU
  (``hydra/launcher=joblib``): total wall time and jobs per minute.
- placement: a 12-job sweep of ``experiment=fast`` on ``hydra/launcher=joblib``, one job per GPU at a time and
  then two (``speed.jobs_per_gpu``): jobs per minute, and each job's recorded device against its round-robin
  GPU (job number mod the visible GPUs).
"""

from __future__ import annotations

import statistics
import sys

from common import check, metrics, over_seeds, row, run_mnistlab

SEEDS = (1, 2, 3)
GPU = ["trainer=gpu"]
ACCURATE = [
    "model=cnn_bn_do",
    "optim=adamw",
    "optim.lr=0.005",
    "scheduler=onecycle",
    "data.batch_size=256",
    "trainer.max_epochs=8",
]
ABLATION = ["experiment=ablation", "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]
ABLATION_JOBS = 72


def fast() -> bool:
    accs, _, _ = over_seeds(SEEDS, "experiment=fast", *GPU)
    return check("mean test/acc >= 99.0 %", statistics.mean(accs) >= 0.990)


def precision() -> bool:
    for name in ("16-mixed", "32-true"):
        print(f"  {name}:")
        _, _, times = over_seeds(SEEDS, "experiment=fast", *GPU, f"trainer.precision={name}")
        row(f"{name}: mean seconds of training (1 epoch)", statistics.mean(times), "s")
    return True


def accurate() -> bool:
    accs, _, times = over_seeds(SEEDS, *ACCURATE, *GPU)
    row("slowest training", max(times), "s")
    return check("mean test/acc >= 99.5 % in <= 10 s of training", statistics.mean(accs) >= 0.995 and max(times) <= 10)


def best() -> bool:
    import best_model

    return best_model.main(GPU)


def ablation() -> bool:
    shared = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "speed.jobs_per_gpu=4"]
    for label, launcher in (("one job at a time", []), ("4 jobs sharing the GPU", shared)):
        wall, _ = run_mnistlab(*ABLATION, *GPU, *launcher, multirun=True)
        row(f"{ABLATION_JOBS} runs, {label}: whole sweep", wall, "s")
        row(f"{ABLATION_JOBS} runs, {label}: jobs per minute", 60 * ABLATION_JOBS / wall, "jobs/min")
    return True


PLACEMENT_JOBS = 12


def placement() -> bool:
    import torch

    from mnistlab.training.devices import assign_gpu

    gpus = list(range(torch.cuda.device_count()))
    seeds = ",".join(str(s) for s in range(1, PLACEMENT_JOBS + 1))
    ok = True
    for per_gpu in (1, 2):
        launcher = [
            "hydra/launcher=joblib",
            f"hydra.launcher.n_jobs={len(gpus) * per_gpu}",
            f"speed.jobs_per_gpu={per_gpu}",
        ]
        wall, sweep = run_mnistlab("experiment=fast", *GPU, f"seed={seeds}", *launcher, multirun=True)
        row(
            f"{PLACEMENT_JOBS} jobs, {per_gpu} per GPU on {len(gpus)} GPU(s): jobs per minute",
            60 * PLACEMENT_JOBS / wall,
            "jobs/min",
        )
        recorded = [metrics(sweep / str(job)).get("device") for job in range(PLACEMENT_JOBS)]
        expected = [f"cuda:{assign_gpu(job, gpus)}" for job in range(PLACEMENT_JOBS)]
        ok = check(f"{per_gpu} per GPU: every job on its round-robin GPU", recorded == expected) and ok
    return ok


PARTS = {
    "fast": fast,
    "precision": precision,
    "accurate": accurate,
    "best": best,
    "ablation": ablation,
    "placement": placement,
}


def main(names: list[str] = ()) -> bool:
    import torch

    if not torch.cuda.is_available():
        print("  no CUDA device here: these figures need one (python bench/gpu.py on a GPU machine)")
        return True
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        sys.exit(f"bench/gpu.py: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    print(f"  device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    ok = True
    for name in names or PARTS:
        print(f"  -- {name}", flush=True)
        ok = PARTS[name]() and ok
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main(sys.argv[1:]) else 1)
