"""`make train`'s default config on real MNIST: test accuracy and wall time.

Targets on this CPU: test/acc >= 0.993 in under 10 minutes for the whole command.
"""

from __future__ import annotations

from common import check, metrics, row, run_mnistlab


def main() -> bool:
    wall, run = run_mnistlab()
    result = metrics(run)
    row("test/acc of the default config", 100 * result["test/acc"], "%")
    row(f"training, {result['epochs']} epochs", result["train_time_s"], "s")
    row("seconds per epoch", result["time_per_epoch_s"], "s")
    row("whole command (python -m mnistlab.train)", wall, "s")
    ok = check("test/acc >= 99.3 %", result["test/acc"] >= 0.993)
    return check("whole command < 600 s", wall < 600) and ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
