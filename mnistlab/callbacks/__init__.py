"""Lightning callbacks of mnistlab (and the Hydra callback that summarizes a sweep)."""

from mnistlab.callbacks.epoch_seed import EpochSeed
from mnistlab.callbacks.run_config import StoreRunConfig
from mnistlab.callbacks.run_stats import RunStats

__all__ = ["EpochSeed", "RunStats", "StoreRunConfig"]
