"""What runs learned, read back from their run dirs: the run report (confusion matrix, per-class scores,
baselines), the sweep report (ranking, main effects, seed variance) and the figures of both."""
