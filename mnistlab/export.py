"""``python -m mnistlab.export ckpt_path=… format=onnx|torchscript``: one file for deployment, checked against
the checkpoint before it replaces anything."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mnistlab.core.composition import run_hydra_command
from mnistlab.core.config import CONFIG_DIR
from mnistlab.core.errors import run_command
from mnistlab.core.hydra_compat import MAIN_OPTIONS
from mnistlab.core.process import end_process


@hydra.main(config_path=CONFIG_DIR, config_name="export", **MAIN_OPTIONS)
def main(cfg: DictConfig) -> None:
    from mnistlab.serving.export import export

    run_command(lambda: export(cfg))


def cli() -> None:
    """The ``mnistlab-export`` command."""
    end_process(lambda: run_hydra_command(main, "export"))


if __name__ == "__main__":
    cli()
