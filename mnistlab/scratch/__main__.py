"""``python -m mnistlab.scratch``: NumPy softmax regression (or ``scratch.model=mlp``) on MNIST; saves the ten
weight rows of the softmax regression as 28×28 images, and metrics.json."""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig

from mnistlab.core.composition import run_hydra_command
from mnistlab.core.config import CONFIG_DIR, to_plain
from mnistlab.core.errors import run_command
from mnistlab.core.fields import validate
from mnistlab.core.hydra_compat import MAIN_OPTIONS
from mnistlab.core.process import end_process


def run(cfg: DictConfig) -> dict:
    validate(cfg, "scratch")  # in a second, before the data modules (and Lightning) are imported
    from mnistlab.core.record import EPOCHS, STATUS, TEST_ACC, TEST_LOSS, TRAIN_TIME_S, Status, write_record
    from mnistlab.data import create_datamodule
    from mnistlab.scratch.numpy_models import MLPNP, SoftmaxRegressionNP, cross_entropy, train

    datamodule = create_datamodule(to_plain(cfg.data))
    datamodule.setup("fit")
    # pixels in [0, 1]; `scratch.standardize=true` subtracts the train mean and divides by the train std
    mean, std = (datamodule.mean[0], datamodule.std[0]) if cfg.scratch.standardize else (0.0, 1.0)

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        images, labels = datamodule.splits[split]
        x = (images.flatten(1).numpy().astype(np.float32) / 255 - mean) / std
        return x, labels.numpy()

    (x, y), (x_val, y_val), (x_test, y_test) = arrays("train"), arrays("val"), arrays("test")
    s = cfg.scratch
    model: MLPNP | SoftmaxRegressionNP
    if s.model == "mlp":
        model = MLPNP(x.shape[1], datamodule.num_classes, hidden=int(s.hidden), seed=cfg.seed)
    else:  # softmax: validate() allows no other
        model = SoftmaxRegressionNP(x.shape[1], datamodule.num_classes, seed=cfg.seed)
    start = time.perf_counter()
    history = train(model, x, y, x_val, y_val, float(s.lr), int(s.batch_size), int(s.epochs), int(s.patience), cfg.seed)
    p_test, _ = model.forward(x_test)
    out_dir = Path(cfg.paths.output_dir)
    result = {
        STATUS: Status.COMPLETED,
        "model": s.model,
        TEST_ACC: float((p_test.argmax(1) == y_test).mean()),
        TEST_LOSS: cross_entropy(p_test, y_test),
        EPOCHS: len(history),
        TRAIN_TIME_S: round(time.perf_counter() - start, 3),
        "history": history,
    }
    if s.model == "softmax":
        save_weight_images(model.params["W"], datamodule.classes, out_dir / "softmax_weights.png")
    write_record(out_dir, result)
    print(f"{TEST_ACC}: {result[TEST_ACC]:.4f}  {TEST_LOSS}: {result[TEST_LOSS]:.4f}  ({len(history)} epochs)")
    return result


def save_weight_images(weights: np.ndarray, classes, path: Path) -> None:
    """Each class's weight row as a 28×28 image: the 'template' softmax regression learned for it."""
    from mnistlab.analysis.figures import pyplot, save_figure

    figure, axes = pyplot().subplots(2, 5, figsize=(8, 3.6))
    for ax, row, name in zip(axes.flat, weights.T, classes, strict=False):
        limit = np.abs(row).max()
        ax.imshow(row.reshape(28, 28), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(name)
        ax.axis("off")
    figure.tight_layout()
    save_figure(figure, path, dpi=100)


@hydra.main(config_path=CONFIG_DIR, config_name="scratch", **MAIN_OPTIONS)
def main(cfg: DictConfig) -> None:
    run_command(lambda: run(cfg))


def cli() -> None:
    """The ``mnistlab-scratch`` command."""
    end_process(lambda: run_hydra_command(main, "scratch"))


if __name__ == "__main__":
    cli()
