"""`make bench`: every bench in turn (or those named: ``python bench/run_all.py best_model``, the hours-long
best single model, which is not in the default list); exit status 1 when a target is missed. The ``gpu``
bench passes with a line saying so where no CUDA device is."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
BENCHES = [
    "startup",
    "cnn_throughput",
    "mlp_epoch",
    "sweep_overhead",
    "sweep_parallel",
    "threads_under_load",
    "compile_cpu",
    "time_to_accuracy",
    "fast995",
    "lr_finder",
    "resnet_fashion",
    "default_recipe",
    "fashion_recipe",
    "drawn_digits",
    "photo_digits",
    "own_images",
    "serve_load",
    "gpu",
]


def main(names: list[str]) -> int:
    failed = []
    for name in names or BENCHES:
        print(f"\n== {name} ==", flush=True)
        if not importlib.import_module(name).main():
            failed.append(name)
        sys.stdout.flush()
    print(f"\n{len(names or BENCHES) - len(failed)} passed, {len(failed)} failed" + (f": {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
