"""Lightning callbacks of mnistlab (and the Hydra callback that summarizes a sweep).

Imported lazily: Hydra loads ``mnistlab.callbacks.sweep`` at start-up, which must not pull in Lightning.
"""

from importlib import import_module
from typing import Any

_WHERE = {
    "ClassDistribution": "diagnostics",
    "FeatureMaps": "diagnostics",
    "Filters": "diagnostics",
    "Histograms": "diagnostics",
    "ModelGraph": "diagnostics",
    "SanityChecks": "diagnostics",
    "TrainingSamples": "diagnostics",
    "EpochSeed": "epoch_seed",
    "StoreRunConfig": "run_config",
    "RunStats": "run_stats",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'mnistlab.callbacks' has no attribute {name!r}")
    return getattr(import_module(f"mnistlab.callbacks.{_WHERE[name]}"), name)
