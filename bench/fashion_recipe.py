"""`experiment=fashion`: Fashion-MNIST test accuracy of the small ResNet recipe, and its whole command's time.

Target on this 2-core CPU: test/acc >= 93.5 % in <= 15 minutes for the whole command (seed 1).
"""

from __future__ import annotations

import sys

from common import check, metrics, row, run_mnistlab


def main(overrides: list[str] = ()) -> bool:
    wall, run = run_mnistlab("experiment=fashion", "seed=1", *overrides)
    result = metrics(run)
    row(
        f"test/acc after {result['epochs']} epochs (val/acc_best {100 * result['val/acc_best']:.2f} %)",
        100 * result["test/acc"],
        "%",
    )
    row("seconds per epoch", result["time_per_epoch_s"], "s")
    row("whole command (python -m mnistlab.train experiment=fashion)", wall, "s")
    ok = check("test/acc >= 93.5 %", result["test/acc"] >= 0.935)
    return check("whole command <= 15 min", wall <= 900) and ok


if __name__ == "__main__":
    raise SystemExit(0 if main(sys.argv[1:]) else 1)
