"""Lightning callbacks of mnistlab."""

from mnistlab.callbacks.run_config import StoreRunConfig
from mnistlab.callbacks.run_stats import RunStats

__all__ = ["RunStats", "StoreRunConfig"]
