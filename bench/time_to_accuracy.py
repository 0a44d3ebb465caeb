"""`experiment=fast`: MNIST test accuracy after one epoch of the small CNN, and the whole command's wall time,
over seeds 1, 2 and 3; with what the command's start-up is made of.

Targets on this 2-core CPU: mean test/acc >= 99.0 % and every whole command <= 15 s (start-up, one epoch of
training and validation, the test and the run report included).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from common import REPO, check, over_seeds, row

SEEDS = (1, 2, 3)


def import_seconds(module: str, rounds: int = 3) -> float:
    """Best wall time of a fresh ``python -c 'import <module>'``, interpreter start and teardown included."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> bool:
    # the imports first: they also warm the file cache, as any earlier command would have for a user
    row("python alone (python -c pass)", import_seconds("sys"), "s")
    row("import torch", import_seconds("torch"), "s")
    row("import lightning.pytorch (torchmetrics, torchvision with it)", import_seconds("lightning.pytorch"), "s")
    accs, walls, _ = over_seeds(SEEDS, "experiment=fast")
    ok = check("mean test/acc >= 99.0 %", statistics.mean(accs) >= 0.990)
    return check("every whole command <= 15 s", max(walls) <= 15) and ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
