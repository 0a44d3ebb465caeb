"""What the network sees and learns, in TensorBoard: each a callback, switched on or off in `callbacks`.

All of them work at epoch or fit boundaries (never per step), so they cost nothing in the hot loop.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from mnistlab.analysis.figures import pyplot, save_figure, tensorboard_writers
from mnistlab.core.errors import first_line

log = logging.getLogger("mnistlab.diagnostics")

# the hooks' pl_module is Any: they read an mnistlab task's own attributes (net, normalize, hparams.num_classes…)


def _tensorboards(trainer: L.Trainer) -> list[Any]:
    return tensorboard_writers(trainer.loggers) if trainer.is_global_zero else []


def _grid(images: Tensor, nrow: int = 8) -> Tensor:
    from torchvision.utils import make_grid

    return make_grid(images.detach().float().cpu(), nrow=nrow, normalize=True, scale_each=True, pad_value=1.0)


class SanityChecks(L.Callback):
    """Start of training: the first batch's shape and value range, and the initial loss against ln(C) — a
    freshly initialized classifier should be about uniformly unsure. Off by more than
    ``tolerance`` gives a warning: a bug in the data, the labels or the init. Values go to metrics.json."""

    def __init__(self, tolerance: float = 0.2) -> None:
        self.tolerance = tolerance
        self.results: dict[str, Any] = {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step != 1 or self.results:  # the loss of the very first step, before any update
            return
        images = batch[0]
        loss = float(outputs["loss"])
        self.results = {
            "sanity/batch_shape": list(images.shape),
            "sanity/batch_min": float(images.min()),
            "sanity/batch_max": float(images.max()),
            "sanity/initial_loss": round(loss, 4),
        }
        expected = pl_module.expected_initial_loss
        if expected is None:  # a detector: no ln(C) to compare with
            return
        self.results["sanity/expected_initial_loss"] = round(expected, 4)
        log.info(
            "first batch %s in [%.3f, %.3f]; initial loss %.4f (ln C = %.4f)",
            tuple(images.shape),
            self.results["sanity/batch_min"],
            self.results["sanity/batch_max"],
            loss,
            expected,
        )
        if abs(loss - expected) > self.tolerance * expected:
            log.warning(
                "initial loss %.4f is more than %d %% away from ln(%d) = %.4f: check the labels, the input "
                "scaling and the init",
                loss,
                100 * self.tolerance,
                pl_module.hparams.num_classes,
                expected,
            )


class TrainingSamples(L.Callback):
    """A grid of the first training batch as the model receives it (after augmentation)."""

    def __init__(self, count: int = 64) -> None:
        self.count = count

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0 and trainer.current_epoch == 0:
            for tb in _tensorboards(trainer):
                tb.add_image("samples/train_augmented", _grid(batch[0][: self.count]), global_step=0)


class ClassDistribution(L.Callback):
    """Bar charts of the class counts of each split: a skewed split shows at once."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        splits = getattr(trainer.datamodule, "splits", {})  # type: ignore[attr-defined]  # set by Lightning
        tbs = _tensorboards(trainer)
        if not splits or not tbs:
            return
        figure, axes = pyplot().subplots(1, len(splits), figsize=(4 * len(splits), 3), squeeze=False)
        for ax, (name, (_, labels)) in zip(axes.flat, splits.items(), strict=True):
            counts = torch.bincount(labels.cpu(), minlength=pl_module.hparams.num_classes)
            ax.bar(range(len(counts)), counts.tolist())
            ax.set_title(f"{name} ({len(labels)})")
        figure.tight_layout()
        save_figure(figure, None, "data/class_distribution", tbs)


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


class Filters(L.Callback):
    """The first conv layer's kernels, at the end of training."""

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        convs = _convs(pl_module.net)
        if convs:
            weight = convs[0].weight.detach()  # (out, in, k, k): one tile per output channel, channels averaged
            tiles = weight.mean(1, keepdim=True) if weight.shape[1] != 3 else weight
            for tb in _tensorboards(trainer):
                tb.add_image("model/first_layer_filters", _grid(tiles), global_step=trainer.global_step)


class FeatureMaps(L.Callback):
    """Feature maps of one validation image after each conv block, at the end of training."""

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        features = getattr(pl_module.net, "features", None)
        splits = getattr(trainer.datamodule, "splits", {})  # type: ignore[attr-defined]  # set by Lightning
        tbs = _tensorboards(trainer)
        if not isinstance(features, nn.Sequential) or "val" not in splits or not tbs:
            return
        image = splits["val"][0][:1].to(pl_module.device).float() / 255
        x = pl_module.normalize(image)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            for tb in tbs:
                tb.add_image("model/input_image", _grid(image), global_step=trainer.global_step)
            for index, block in enumerate(features):
                x = block(x)
                tb_maps = _grid(x[0].unsqueeze(1)[:64], nrow=math.ceil(math.sqrt(min(64, x.shape[1]))))
                for tb in tbs:
                    tb.add_image(f"model/feature_maps_block{index + 1}", tb_maps, global_step=trainer.global_step)
        pl_module.train(was_training)


class Histograms(L.Callback):
    """Weight and gradient histograms of every parameter, every ``every_n_epochs`` epochs (gradients of the
    epoch's first batch)."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = max(1, int(every_n_epochs))

    def _due(self, trainer: L.Trainer) -> bool:
        return trainer.current_epoch % self.every_n_epochs == 0

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: Any, optimizer: Any) -> None:
        if self._due(trainer) and trainer.fit_loop.epoch_loop.batch_idx == 0:
            for tb in _tensorboards(trainer):
                for name, param in pl_module.net.named_parameters():
                    if param.grad is not None and torch.isfinite(param.grad).all():  # NaNs are caught elsewhere
                        tb.add_histogram(f"gradients/{name}", param.grad.detach().float().cpu(), trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self._due(trainer):
            for tb in _tensorboards(trainer):
                for name, param in pl_module.net.named_parameters():
                    if torch.isfinite(param).all():
                        tb.add_histogram(f"weights/{name}", param.detach().float().cpu(), trainer.global_step)


class ModelGraph(L.Callback):
    """The network's graph in TensorBoard's Graphs tab (traced once with one input)."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        tbs = _tensorboards(trainer)
        if not tbs:
            return
        example = torch.zeros(1, *pl_module.hparams.input_shape, device=pl_module.device)
        was_training = pl_module.training
        pl_module.eval()
        try:
            with warnings.catch_warnings():  # TensorBoard traces with torch.jit, which warns of its deprecation
                warnings.simplefilter("ignore", FutureWarning)
                for tb in tbs:
                    tb.add_graph(pl_module.net, example)
        except Exception as err:  # tracing is best effort: some ops do not trace
            log.warning("model graph not logged: %s", first_line(err))
        finally:
            pl_module.train(was_training)
