"""`tune.lr_find=true` against the preset's rate: the default recipe on real MNIST on a short budget (one epoch of
150 batches, the one-cycle schedule fitted to it), over seeds 1 and 2; val/acc of each, the finder's suggestion and
the rate it applied.

Target: the finder's runs validate at least as well as the preset's (mean over seeds, within 0.3 points of
noise), or the sanity check kept the preset's rate and the runs say so.
"""

from __future__ import annotations

import statistics
import sys

from common import check, metrics, run_mnistlab

SEEDS = (1, 2)
BUDGET = ("trainer.max_epochs=1", "trainer.limit_train_batches=150", "test=false", "callbacks.progress_bar=null")


def main(overrides: list[str] = ()) -> bool:
    preset_accs, finder_accs = [], []
    print(f"  {'seed':<5} {'run':<9} {'suggested':>10} {'applied':>8} {'lr':>9} {'val/acc':>8} {'wall':>6}  note")
    for seed in SEEDS:
        for name, extra in (("preset", ()), ("lr_find", ("tune.lr_find=true",))):
            wall, run = run_mnistlab(f"seed={seed}", *BUDGET, *extra, *overrides)
            result = metrics(run)
            acc = result["val/acc_best"]
            (finder_accs if extra else preset_accs).append(acc)
            suggested = result.get("lr_find/suggestion")
            shown = "—" if suggested is None else f"{suggested:.1e}"
            applied = "—" if not extra else ("yes" if result["lr_find/applied"] else "no")
            note = result.get("lr_find/reason") or ""
            print(
                f"  {seed:<5} {name:<9} {shown:>10} {applied:>8} {result['lr']:>9.1e} {100 * acc:>7.2f}% {wall:>5.0f}s"
                f"  {note}"
            )
    preset, finder = statistics.mean(preset_accs), statistics.mean(finder_accs)
    print(f"  mean val/acc: preset {100 * preset:.2f} %, lr_find {100 * finder:.2f} %")
    return check("lr_find validates at least as well as the preset (within 0.3 points)", finder >= preset - 0.003)


if __name__ == "__main__":
    raise SystemExit(0 if main(sys.argv[1:]) else 1)
