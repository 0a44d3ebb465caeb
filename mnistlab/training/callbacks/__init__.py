"""Lightning callbacks of mnistlab, imported on first use (configs name them as
``mnistlab.training.callbacks.<Name>``)."""

from mnistlab.core.lazy import lazy_exports

_WHERE = {
    "ClassDistribution": "diagnostics",
    "FeatureMaps": "diagnostics",
    "Filters": "diagnostics",
    "Histograms": "diagnostics",
    "ModelGraph": "diagnostics",
    "SanityChecks": "diagnostics",
    "TrainingSamples": "diagnostics",
    "EpochSeed": "epoch_seed",
    "FollowLoad": "load_threads",
    "StoreRunConfig": "run_config",
    "RunStats": "run_stats",
    "RunProgressBar": "progress",
    "LearningRate": "learning_rate",
    "RunCheckpoint": "checkpoint",
    "WeightAverage": "weight_average",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_exports("mnistlab.training.callbacks", _WHERE)
