"""`speed.compile=true` on this CPU: the CNN's epoch (`cnn_bn_do`, batch 128, training loop only) compiled against
eager, compile time included.

Each mode runs 1 and 3 epochs in fresh processes: the steady epoch is (3-epoch time - 1-epoch time) / 2, and
what compiling costs is the compiled 1-epoch time less the compiled steady epoch. Compiling pays from
cost / (eager epoch - compiled epoch) epochs on, if the compiled epoch is faster at all; the default
(`speed.compile: false`) is right while that is more than the default recipe's 18 epochs.
"""

from __future__ import annotations

from common import TRAIN_ONLY, check, metrics, row, run_mnistlab

DEFAULT_EPOCHS = 18
COMMON = ["model=cnn_bn_do", "data.batch_size=128", *TRAIN_ONLY]


def train_seconds(epochs: int, compiled: bool) -> float:
    _, run = run_mnistlab(*COMMON, f"trainer.max_epochs={epochs}", f"speed.compile={str(compiled).lower()}")
    return float(metrics(run)["train_time_s"])


def main() -> bool:
    one, three = {}, {}
    for compiled in (False, True, False, True):  # alternated: a slow spell of the machine hits both
        one.setdefault(compiled, []).append(train_seconds(1, compiled))
        three.setdefault(compiled, []).append(train_seconds(3, compiled))
    steady, cost = {}, {}
    for compiled in (False, True):
        first, total = min(one[compiled]), min(three[compiled])
        steady[compiled] = (total - first) / 2
        cost[compiled] = first - steady[compiled]
        name = "compiled" if compiled else "eager"
        row(f"{name}: 1 epoch (best of 2)", first, "s")
        row(f"{name}: 3 epochs (best of 2)", total, "s")
        row(f"{name}: steady epoch", steady[compiled], "s")
    row("compiling costs (compiled first epoch less its steady epoch)", cost[True] - cost[False], "s")
    row("compiled steady epoch / eager", steady[True] / steady[False], "x")
    gain = steady[False] - steady[True]
    if gain > 0:
        pays_from = (cost[True] - cost[False]) / gain
        row("compiling pays from this many epochs on", pays_from, "epochs")
        default_ok = (pays_from > DEFAULT_EPOCHS) == _default_is_eager()
    else:
        print("  compiled epochs are not faster here: compiling never pays")
        default_ok = _default_is_eager()
    return check("speed.compile's default follows the figure", default_ok)


def _default_is_eager() -> bool:
    from common import REPO
    from omegaconf import OmegaConf

    return OmegaConf.load(REPO / "conf" / "train.yaml").speed.compile is False


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
