"""The one LightningModule: any classification architecture, its optimizer and scheduler, its metrics."""

from __future__ import annotations

import inspect
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import get_class
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from mnistlab.config import model_task
from mnistlab.errors import ConfigError, LossDivergedError

# keys of the `model` config that configure the framework, not the architecture's constructor
MODEL_RUNTIME_KEYS = ("compile", "channels_last")


class ImageClassifier(L.LightningModule):
    """Cross-entropy classifier around a plain ``nn.Module`` built from the ``model`` config.

    Every constructor argument is a plain container (no modules, no OmegaConf objects), so checkpoints
    load with ``torch.load(weights_only=True)`` and rebuild the network from ``hparams`` alone.
    ``mean``/``std`` (per channel, [0, 1] scale) are the train split's statistics: the model normalizes its
    own input, so prediction and serving need only the checkpoint.

    Per-step cost is kept at Lightning's floor: metrics accumulate on the device, nothing is ``self.log``-ged
    per step, and the running training loss reaches the loggers every ``trainer.log_every_n_steps``.
    """

    def __init__(
        self,
        model: dict[str, Any],
        optim: dict[str, Any],
        scheduler: dict[str, Any] | None,
        input_shape: list[int],
        num_classes: int,
        mean: list[float],
        std: list[float],
        classes: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # HParams are logged once, deliberately, by train.py
        net_kwargs = {k: v for k, v in model.items() if k not in MODEL_RUNTIME_KEYS and k != "_target_"}
        self.net: nn.Module = get_class(model["_target_"])(
            input_shape=tuple(input_shape), num_classes=num_classes, **net_kwargs
        )
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        has_conv = any(isinstance(m, nn.Conv2d) for m in self.net.modules())
        self.channels_last = bool(model.get("channels_last", True)) and has_conv
        if self.channels_last:  # NHWC convolutions run ~1.5× faster with oneDNN on CPU, and on tensor cores
            self.net.to(memory_format=torch.channels_last)
        if model.get("compile", False):
            self.net.compile()
        lr = float(optim.get("lr", 0))
        if not lr > 0:
            raise ConfigError(f"optim.lr={optim.get('lr')!r} must be a number > 0")
        self.lr = lr  # Lightning's LR finder reads and writes this attribute

        metric_args = {"num_classes": num_classes, "validate_args": False}
        self.train_acc = MulticlassAccuracy(average="micro", **metric_args)
        self.val_acc = MulticlassAccuracy(average="micro", **metric_args)
        self.val_f1 = MulticlassF1Score(average="macro", **metric_args)
        self.test_acc = MulticlassAccuracy(average="micro", **metric_args)
        self.test_f1 = MulticlassF1Score(average="macro", **metric_args)
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(**metric_args)
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in the state dict, so a resumed run keeps its best
        self._loss_window = torch.zeros(())
        self._window_steps = 0
        self.val_history: list[float] = []  # val/acc per epoch, kept in checkpoints for resumed runs
        self.test_results: dict[str, Any] = {}  # confusion matrix and misclassified examples of the last test
        self.keep_misclassified = 36

    def forward(self, x: Tensor) -> Tensor:
        """Logits for images in [0, 1], shape ``(N, C, H, W)``."""
        x = (x - self.mean) * self.inv_std
        if self.channels_last:  # a no-op for one channel; for RGB it keeps the convolutions in NHWC
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    # -- training -------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        if self.trainer.current_epoch == 0:  # the sanity check's validation must not count as a best
            self.val_acc_best.reset()

    def on_train_epoch_start(self) -> None:
        self._loss_window = torch.zeros((), device=self.device)
        self._window_steps = 0

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.train_acc.update(logits.detach(), labels)
        self._track_loss(loss.detach())
        return loss

    def _track_loss(self, loss: Tensor) -> None:
        """Accumulate the step's loss on the device; flush it to the loggers every log_every_n_steps."""
        self.train_loss.update(loss)
        self._loss_window += loss
        self._window_steps += 1
        if self._window_steps >= self.trainer.log_every_n_steps:
            self._flush_loss_window()

    def _flush_loss_window(self) -> None:
        """Log the mean loss of the last steps (one host sync per window) and stop on NaN/inf."""
        value = (self._loss_window / self._window_steps).item()
        self._loss_window.zero_()
        self._window_steps = 0
        if not math.isfinite(value):
            raise LossDivergedError(f"training loss is {value} at step {self.global_step}")
        for logger in self.loggers:
            logger.log_metrics({"train/loss_step": value}, step=self.global_step)

    def on_train_epoch_end(self) -> None:
        loss = self.train_loss.compute()
        if not torch.isfinite(loss):
            raise LossDivergedError(f"training loss is {loss.item()} in epoch {self.current_epoch}")
        self.log_dict({"train/loss": loss, **self.train_epoch_metrics()})
        self.train_loss.reset()

    def train_epoch_metrics(self) -> dict[str, Tensor]:
        """Training metrics of the epoch besides the loss (then reset)."""
        acc = self.train_acc.compute()
        self.train_acc.reset()
        return {"train/acc": acc}

    @property
    def expected_initial_loss(self) -> float | None:
        """ln(C): the loss of a freshly initialized classifier that is uniformly unsure (None: no such value)."""
        return math.log(self.hparams.num_classes)

    @property
    def report_classes(self) -> list[str]:
        """The class names of the test report's confusion matrix and per-class scores."""
        return [str(c) for c in (self.hparams.classes or range(self.hparams.num_classes))]

    # -- evaluation -----------------------------------------------------------------------------
    def _evaluate_batch(self, batch: tuple[Tensor, Tensor], loss: MeanMetric, *metrics: Any) -> None:
        images, labels = batch
        logits = self(images)
        loss.update(F.cross_entropy(logits, labels), weight=len(labels))
        for metric in metrics:
            metric.update(logits, labels)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate_batch(batch, self.val_loss, self.val_acc, self.val_f1)

    def on_validation_epoch_end(self) -> None:
        acc = self.val_acc.compute()
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(acc)
        values = {"val/loss": self.val_loss.compute(), "val/acc": acc, "val/f1": self.val_f1.compute()}
        if not self.trainer.sanity_checking:
            values["val/acc_best"] = self.val_acc_best.compute()
            self.val_history.append(round(float(acc), 6))
        self.log_dict(values, prog_bar=True)
        for metric in (self.val_loss, self.val_acc, self.val_f1):
            metric.reset()

    def on_test_epoch_start(self) -> None:
        self._misclassified: list[tuple[Tensor, Tensor, Tensor]] = []
        self._kept = 0

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, labels = batch
        logits = self(images)
        self.test_loss.update(F.cross_entropy(logits, labels), weight=len(labels))
        for metric in (self.test_acc, self.test_f1, self.test_confusion):
            metric.update(logits, labels)
        if self._kept < self.keep_misclassified:  # a few examples for the report, taken as they come
            wrong = (logits.argmax(1) != labels).nonzero().flatten()[: self.keep_misclassified - self._kept]
            if len(wrong):
                self._misclassified.append((images[wrong].cpu(), labels[wrong].cpu(), logits[wrong].argmax(1).cpu()))
                self._kept += len(wrong)

    def on_test_epoch_end(self) -> None:
        self.log_dict(
            {
                "test/loss": self.test_loss.compute(),
                "test/acc": self.test_acc.compute(),
                "test/f1": self.test_f1.compute(),
            }
        )
        misclassified = [torch.cat(parts) for parts in zip(*self._misclassified, strict=True)] if self._kept else []
        self.test_results = {"confusion": self.test_confusion.compute().cpu(), "misclassified": misclassified}
        for metric in (self.test_loss, self.test_acc, self.test_f1, self.test_confusion):
            metric.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_history"] = list(self.val_history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_history = list(checkpoint.get("val_history", []))

    # -- optimization ---------------------------------------------------------------------------
    def _fused_available(self, optim_cls: type) -> bool:
        return "fused" in inspect.signature(optim_cls).parameters and all(
            p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in self.parameters()
        )

    def configure_optimizers(self) -> Any:
        """Build the optimizer and scheduler from their configs, with ``self.lr`` as the learning rate.

        Scheduler arguments that depend on the run are filled in when the config leaves them out:
        ``max_lr`` (OneCycle) from ``self.lr``, ``total_steps`` and ``T_max`` from the trainer.
        """
        optim_cfg = {k: v for k, v in self.hparams.optim.items() if k not in ("_target_", "_partial_", "lr")}
        optim_cls = get_class(self.hparams.optim["_target_"])
        if self._fused_available(optim_cls) and optim_cfg.get("fused") is None and optim_cfg.get("foreach") is None:
            # one fused kernel per step instead of ~8 ops per parameter: 0.3 ms a step saved on a small model
            optim_cfg["fused"] = True
        optimizer = optim_cls(self.parameters(), lr=self.lr, **optim_cfg)
        sched_cfg = dict(self.hparams.scheduler or {})
        target = sched_cfg.pop("_target_", None)
        sched_cfg.pop("_partial_", None)
        if not target:
            return optimizer
        interval = sched_cfg.pop("interval", "epoch")
        if interval not in ("step", "epoch"):
            raise ConfigError(f"scheduler.interval={interval!r} must be 'step' or 'epoch'")
        cls = get_class(target)
        accepted = inspect.signature(cls).parameters
        total = self.trainer.estimated_stepping_batches if interval == "step" else self.trainer.max_epochs
        for key, value in (("max_lr", self.lr), ("total_steps", total), ("T_max", total)):
            if key in accepted and sched_cfg.get(key) is None:
                sched_cfg[key] = value
        steps, warmup = sched_cfg.get("total_steps"), sched_cfg.get("pct_start")
        if steps and warmup and float(steps) * float(warmup) == 1:  # OneCycleLR divides by zero (4 × 0.25)
            sched_cfg["pct_start"] = 2 / float(steps)
        scheduler = cls(optimizer, **sched_cfg)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}


def read_checkpoint(path: str) -> dict[str, Any]:
    """A checkpoint dict read with ``torch.load(weights_only=True)``: no pickled code ever runs."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"ckpt_path={path} does not exist") from None
    except Exception as err:  # unpickling refuses anything but tensors and plain containers
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"ckpt_path={path} is not a readable mnistlab checkpoint ({first_line[:200]})") from None
    if not isinstance(checkpoint, dict) or "hyper_parameters" not in checkpoint or "state_dict" not in checkpoint:
        raise ConfigError(f"ckpt_path={path} is not a Lightning checkpoint of mnistlab (no hyper_parameters)")
    return checkpoint


def module_class(model: dict[str, Any]) -> type[ImageClassifier]:
    """The LightningModule for an architecture: its class attribute ``task`` says ``detection`` for
    detectors (``mnistlab.detector.ObjectDetector``); everything else is an ``ImageClassifier``."""
    if model_task(model["_target_"]) == "detection":
        from mnistlab.detector import ObjectDetector

        return ObjectDetector
    return ImageClassifier


def load_checkpoint(path: str) -> tuple[ImageClassifier, dict[str, Any]]:
    """Rebuild an ``ImageClassifier`` from a checkpoint (safely, see ``read_checkpoint``).

    Returns the model (in eval mode, on the CPU) and the raw checkpoint dict, whose ``mnistlab`` entry
    holds the run's resolved config.
    """
    checkpoint = read_checkpoint(path)
    try:
        model = module_class(checkpoint["hyper_parameters"]["model"])(**checkpoint["hyper_parameters"])
        model.load_state_dict(checkpoint["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as err:
        reason = str(err).splitlines()[0][:200]
        raise ConfigError(f"ckpt_path={path} does not match its architecture: {reason}") from None
    return model.eval(), checkpoint
