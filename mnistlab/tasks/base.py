"""What every task shares: the network from the model registry, normalization by the train statistics,
the optimizer and scheduler, the running training loss, best-validation tracking and checkpoint hooks.

Tasks (``classification.py``, ``detection.py``) are siblings on this base: each says how a batch becomes a
loss and which metrics it keeps. Every constructor argument is a plain value, so checkpoints load with
``torch.load(weights_only=True)`` and rebuild the network from ``hparams`` alone.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MaxMetric

from mnistlab.core.errors import ConfigError, LossDivergedError
from mnistlab.core.fields import check
from mnistlab.core.record import TRAIN_LOSS, TRAIN_LOSS_STEP, VAL_ACC, VAL_ACC_BEST
from mnistlab.models import create_model
from mnistlab.models.layers import normalize
from mnistlab.tasks.optim import build_optimizer, build_scheduler, continue_schedule

log = logging.getLogger("mnistlab.train")
LENGTH_SETTINGS = ("total_steps", "T_max")  # scheduler arguments filled in from the run's length


class ImageTask(L.LightningModule):
    """``mean``/``std`` (per channel, [0, 1] scale) are the train split's statistics: the model normalizes its
    own input, so prediction and serving need only the checkpoint.

    Per-step cost is kept at Lightning's floor: metrics accumulate on the device, nothing is ``self.log``-ged
    per step, and the running training loss reaches the loggers every ``trainer.log_every_n_steps``.
    """

    uses_channels_last = True  # a task whose network takes lists of images (detection) says False
    mean: Tensor  # buffers
    inv_std: Tensor

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
        channels_last: bool = True,
        compile: bool = False,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # HParams are logged once, deliberately, by the pipeline
        self.net: nn.Module = create_model(model, tuple(input_shape), num_classes)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        has_conv = any(isinstance(m, nn.Conv2d) for m in self.net.modules())
        self.channels_last = bool(channels_last) and self.uses_channels_last and has_conv
        if self.channels_last:  # NHWC convolutions run ~1.5× faster with oneDNN on CPU, and on tensor cores
            self.net.to(memory_format=torch.channels_last)
        if compile:
            self.net.compile()
        self.lr = float(check("optim.lr", optim.get("lr")))  # Lightning's LR finder reads and writes this
        self.label_smoothing = float(check("loss.label_smoothing", label_smoothing) or 0.0)
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # in the state dict, so a resumed run keeps its best
        # the training loss is summed on the device and read once a logging window (a metric object's update
        # costs ~0.1 ms a step in Python, a tenth of a small model's step); NaN is caught at every read
        self._loss_window = torch.zeros(())
        self._window_steps = 0
        self._epoch_loss, self._epoch_steps = 0.0, 0
        self.val_history: list[float] = []  # val/acc per epoch, kept in checkpoints for resumed runs
        self.test_results: dict[str, Any] = {}  # confusion matrix and misclassified examples of the last test

    def normalize(self, images: Tensor) -> Tensor:
        return normalize(images, self.mean, self.inv_std)

    # -- what a task says about itself ----------------------------------------------------------
    @property
    def expected_initial_loss(self) -> float | None:
        """The loss of a freshly initialized model that is uniformly unsure (None: no such value)."""
        return None

    @property
    def report_classes(self) -> list[str]:
        """The class names of the test report's confusion matrix and per-class scores."""
        return [str(c) for c in (self.hparams["classes"] or range(self.hparams["num_classes"]))]

    def train_epoch_metrics(self) -> dict[str, Tensor]:
        """Training metrics of the epoch besides the loss (then reset)."""
        return {}

    # -- training -------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        if self.trainer.current_epoch == 0:  # the sanity check's validation must not count as a best
            self.val_acc_best.reset()
        if self.trainer.ckpt_path:  # resumed: the restored schedule may be for another number of epochs
            self._fit_schedules_to_run()

    def _run_length(self, interval: str) -> float:
        if interval == "step":
            return self.trainer.estimated_stepping_batches
        max_epochs = self.trainer.max_epochs
        assert max_epochs is not None  # Lightning fills in its default (1000, or -1 with max_steps) before fit
        return max_epochs

    def _fit_schedules_to_run(self) -> None:
        """A resumed run extended to more epochs (or cut to fewer): schedules whose length came from the run
        (one-cycle, cosine) are rebuilt for the new length and continue from the step reached."""
        settings = self.hparams["scheduler"] or {}
        for config in self.trainer.lr_scheduler_configs:
            old = config.scheduler
            attr = next((a for a in LENGTH_SETTINGS if hasattr(old, a) and settings.get(a) is None), None)
            if attr is None or getattr(old, attr) == self._run_length(config.interval):
                continue
            if self._run_length(config.interval) < old.last_epoch:
                raise ConfigError(
                    f"trainer.max_epochs={self.trainer.max_epochs} ends before the {old.last_epoch} "
                    f"{config.interval}s this run has done; give more epochs to resume it"
                )
            built = build_scheduler(old.optimizer, settings, self.lr, self._run_length)
            assert built is not None  # the run has a scheduler, so its settings name one
            fresh = built["scheduler"]
            config.scheduler = continue_schedule(fresh, old.last_epoch)
            log.info(
                "resumed with trainer.max_epochs=%s: the %s schedule now spans %s %ss (was %s)",
                self.trainer.max_epochs,
                settings.get("name"),
                getattr(fresh, attr),
                config.interval,
                getattr(old, attr),
            )

    def on_train_epoch_start(self) -> None:
        self._loss_window = torch.zeros((), device=self.device)
        self._window_steps = 0
        self._epoch_loss, self._epoch_steps = 0.0, 0

    def track_loss(self, loss: Tensor) -> None:
        """Accumulate the step's loss on the device; flush it to the loggers every log_every_n_steps."""
        self._loss_window += loss
        self._window_steps += 1
        if self._window_steps >= self.trainer.log_every_n_steps:  # type: ignore[attr-defined]  # set by Lightning
            self._flush_loss_window()

    def _read_loss_window(self) -> float:
        """The mean loss of the steps since the last read (one host sync), added to the epoch's sum."""
        value = (self._loss_window / self._window_steps).item()
        self._epoch_loss += value * self._window_steps
        self._epoch_steps += self._window_steps
        self._loss_window.zero_()
        self._window_steps = 0
        return value

    def _flush_loss_window(self) -> None:
        """Log the mean loss of the last steps and stop on NaN/inf."""
        value = self._read_loss_window()
        if not math.isfinite(value):
            raise LossDivergedError(f"training loss is {value} at step {self.global_step}")
        for logger in self.loggers:
            logger.log_metrics({TRAIN_LOSS_STEP: value}, step=self.global_step)

    def on_train_epoch_end(self) -> None:
        if self._window_steps:
            self._read_loss_window()
        loss = self._epoch_loss / max(1, self._epoch_steps)
        if not math.isfinite(loss):
            raise LossDivergedError(f"training loss is {loss} in epoch {self.current_epoch + 1}")
        # the mean over ranks (each rank sees as many batches)
        self.log_dict({TRAIN_LOSS: loss, **self.train_epoch_metrics()}, sync_dist=True)

    # -- evaluation -----------------------------------------------------------------------------
    def log_validation(self, values: dict[str, Tensor]) -> None:
        """Log the epoch's validation metrics; outside the sanity check, track the best ``val/acc``."""
        if not self.trainer.sanity_checking:
            self.val_acc_best.update(values[VAL_ACC])
            values[VAL_ACC_BEST] = self.val_acc_best.compute()
            self.val_history.append(round(float(values[VAL_ACC]), 6))
        self.log_dict(values, prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["val_history"] = list(self.val_history)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.val_history = list(checkpoint.get("val_history", []))

    # -- optimization ---------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The optimizer and scheduler named in the config, with ``self.lr`` as the learning rate."""
        # mixed precision cannot clip the gradients of a fused optimizer (its step unscales them itself)
        clipped_mixed = bool(self.trainer.gradient_clip_val) and str(self.trainer.precision).endswith("-mixed")
        optimizer = build_optimizer(
            list(self.parameters()), self.hparams["optim"], self.lr, allow_fused=not clipped_mixed
        )
        scheduler = build_scheduler(optimizer, self.hparams["scheduler"], self.lr, self._run_length)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
