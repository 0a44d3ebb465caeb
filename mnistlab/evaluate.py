"""``python -m mnistlab.evaluate ckpt_path=…``: re-test a checkpoint; prints test/acc, test/f1, test/loss and
writes the evaluation report (confusion matrix, per-class scores, baselines) into its own run dir."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mnistlab.api import callable_command
from mnistlab.core.composition import run_hydra_command
from mnistlab.core.config import CONFIG_DIR
from mnistlab.core.errors import run_command
from mnistlab.core.hydra_compat import MAIN_OPTIONS
from mnistlab.core.process import end_process

callable_command(__name__)  # `from mnistlab import evaluate` is also the Python function of mnistlab.api


@hydra.main(config_path=CONFIG_DIR, config_name="evaluate", **MAIN_OPTIONS)
def main(cfg: DictConfig) -> None:
    from mnistlab.training.retest import evaluate_checkpoint

    run_command(lambda: evaluate_checkpoint(cfg))


def cli() -> None:
    """The ``mnistlab-evaluate`` command."""
    end_process(lambda: run_hydra_command(main, "evaluate"))


if __name__ == "__main__":
    cli()
