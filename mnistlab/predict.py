"""``python -m mnistlab.predict ckpt_path=… inputs=[a.png,digits/]``: the label and top-3 probabilities of each
image. An unreadable image is reported on its own line and the others are still predicted; the exit status
is then 1."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from mnistlab.api import callable_command
from mnistlab.core.composition import run_hydra_command
from mnistlab.core.config import CONFIG_DIR
from mnistlab.core.errors import run_command
from mnistlab.core.hydra_compat import MAIN_OPTIONS
from mnistlab.core.process import end_process

callable_command(__name__)  # `from mnistlab import predict` is also the Python function of mnistlab.api


@hydra.main(config_path=CONFIG_DIR, config_name="predict", **MAIN_OPTIONS)
def main(cfg: DictConfig) -> None:
    from mnistlab.serving.predict import predict_files

    results = run_command(lambda: predict_files(cfg))
    if any("error" in r for r in results):
        raise SystemExit(1)


def cli() -> None:
    """The ``mnistlab-predict`` command."""
    end_process(lambda: run_hydra_command(main, "predict"))


if __name__ == "__main__":
    cli()
