"""Training: the fit → test → record pipeline, re-testing a checkpoint, HParams, the LR finder, the Lightning
callbacks and the Hydra callback that closes a sweep. Imports nothing heavy here: Hydra loads
``mnistlab.training.sweep`` at start-up."""
