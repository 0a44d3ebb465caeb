"""``python -m mnistlab.train``: train, test and record one run (or each job of a ``--multirun`` sweep).

The work is ``mnistlab.training.pipeline``; this file is config in → one library call → exit code.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

import mnistlab.core.factors  # noqa: F401  (registers the run-name resolvers of the logger configs)
from mnistlab.api import callable_command
from mnistlab.core.composition import run_hydra_command
from mnistlab.core.config import CONFIG_DIR, prepare_train_overrides
from mnistlab.core.errors import run_command
from mnistlab.core.hydra_compat import MAIN_OPTIONS
from mnistlab.core.process import end_process
from mnistlab.training.multinode import follow_rank_zero
from mnistlab.training.threads import start_measuring

callable_command(__name__)  # `from mnistlab import train` is also the Python function of mnistlab.api


@hydra.main(config_path=CONFIG_DIR, config_name="train", **MAIN_OPTIONS)
def main(cfg: DictConfig) -> float | None:
    from mnistlab.training.pipeline import run_job

    return run_command(lambda: run_job(cfg))


def cli() -> None:
    """The ``mnistlab-train`` command: what is checked on the raw command line (busy dirs, ``resume=``, unknown
    presets) happens before Hydra composes anything."""
    start_measuring()  # start-up is the first window over which other processes' load is measured
    # under torchrun every rank runs in rank 0's run dir
    sys.argv = run_command(lambda: follow_rank_zero(prepare_train_overrides(sys.argv)))
    end_process(lambda: run_hydra_command(main, "train"))


if __name__ == "__main__":
    cli()
