"""``python -m mnistlab.train``: train, test and record one run (or each job of a ``--multirun`` sweep).

The work is ``mnistlab.training.pipeline``; this file is config in → one library call → exit code.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from mnistlab.core.config import CONFIG_DIR, check_group_choices, expand_resume, refuse_busy_dirs
from mnistlab.core.errors import run_command


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    from mnistlab.training.pipeline import run_job

    return run_command(lambda: run_job(cfg))


if __name__ == "__main__":
    refuse_busy_dirs(sys.argv[1:])
    sys.argv = expand_resume(sys.argv)
    check_group_choices(sys.argv[1:])
    main()
