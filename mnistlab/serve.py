"""``python -m mnistlab.serve ckpt_path=… port=8000``: the HTTP API and the drawing page on one port."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mnistlab.core.composition import run_hydra_command
from mnistlab.core.config import CONFIG_DIR
from mnistlab.core.errors import run_command
from mnistlab.core.hydra_compat import MAIN_OPTIONS
from mnistlab.core.process import end_process


@hydra.main(config_path=CONFIG_DIR, config_name="serve", **MAIN_OPTIONS)
def main(cfg: DictConfig) -> None:
    from mnistlab.serving.server import serve

    run_command(lambda: serve(cfg))


def cli() -> None:
    """The ``mnistlab-serve`` command."""
    end_process(lambda: run_hydra_command(main, "serve"))


if __name__ == "__main__":
    cli()
