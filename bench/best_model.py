"""`experiment=best`: the best single MNIST model, selected on validation; its test accuracy and the time it
takes here (25 minutes on a 2-core CPU: run it by name, ``python bench/run_all.py best_model``, or on a GPU with
``python bench/best_model.py trainer=gpu``).

Target: test/acc >= 99.65 % for seed 1.
"""

from __future__ import annotations

import sys

from common import check, metrics, row, run_mnistlab


def main(overrides: list[str] = ()) -> bool:
    wall, run = run_mnistlab("experiment=best", "seed=1", *overrides)
    result = metrics(run)
    row(f"test/acc after {result['epochs']} epochs", 100 * result["test/acc"], "%")
    row(f"val/acc_best (the checkpoint tested: epoch {result.get('best_epoch')})", 100 * result["val/acc_best"], "%")
    row("seconds per epoch", result["time_per_epoch_s"], "s")
    row("whole command", wall, "s")
    return check("test/acc >= 99.65 %", result["test/acc"] >= 0.9965)


if __name__ == "__main__":
    raise SystemExit(0 if main(sys.argv[1:]) else 1)
