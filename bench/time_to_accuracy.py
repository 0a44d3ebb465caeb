"""`experiment=fast`: MNIST test accuracy after one epoch, and the whole command's wall time.

Targets on this CPU: test/acc >= 0.990 and <= 45 s for the whole command (start-up and test included).
"""

from __future__ import annotations

from common import check, metrics, row, run_mnistlab


def main() -> bool:
    wall, run = run_mnistlab("experiment=fast")
    result = metrics(run)
    row("test/acc after 1 epoch", 100 * result["test/acc"], "%")
    row("training (train + val loops)", result["train_time_s"], "s")
    row("whole command (python -m mnistlab.train experiment=fast)", wall, "s")
    ok = check("test/acc >= 99.0 %", result["test/acc"] >= 0.990)
    return check("whole command <= 45 s", wall <= 45) and ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
