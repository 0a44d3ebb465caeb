"""`make train`'s default config on real MNIST, over seeds 1, 2 and 3: test accuracy and whole-command time.

Targets on this 2-core CPU: mean test/acc >= 99.45 %, every seed >= 99.35 %, every whole command <= 8 min.
Extra arguments are overrides for every seed (to try a variant: python bench/default_recipe.py ema.decay=null).
"""

from __future__ import annotations

import statistics
import sys

from common import check, over_seeds

SEEDS = (1, 2, 3)


def main(overrides: list[str] = ()) -> bool:
    accs, walls, _ = over_seeds(SEEDS, *overrides)
    ok = check("mean test/acc >= 99.45 %", statistics.mean(accs) >= 0.9945)
    ok = check("every seed >= 99.35 %", min(accs) >= 0.9935) and ok
    return check("every whole command <= 8 min", max(walls) <= 480) and ok


if __name__ == "__main__":
    raise SystemExit(0 if main(sys.argv[1:]) else 1)
