"""Classification: cross-entropy, torchmetrics accuracy and macro F1, a confusion matrix and misclassified
examples for the test report."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from mnistlab.core.record import TEST, TEST_LOSS, TRAIN_ACC, VAL, VAL_LOSS
from mnistlab.tasks.base import ImageTask


class ClassificationTask(ImageTask):
    keep_misclassified = 36

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        args: dict[str, Any] = {"num_classes": int(kwargs["num_classes"]), "validate_args": False}
        self._train_correct = torch.zeros((), dtype=torch.long)  # counted on the device, read once an epoch
        self._train_seen = 0
        scores = MetricCollection(
            {"acc": MulticlassAccuracy(average="micro", **args), "f1": MulticlassF1Score(average="macro", **args)}
        )
        self.val_scores, self.test_scores = scores.clone(prefix=VAL), scores.clone(prefix=TEST)
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(**args)

    def forward(self, x: Tensor) -> Tensor:
        """Logits for images in [0, 1], shape ``(N, C, H, W)``."""
        x = self.normalize(x)
        if self.channels_last:  # a no-op for one channel; for RGB it keeps the convolutions in NHWC
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)

    @property
    def expected_initial_loss(self) -> float:
        return math.log(self.hparams["num_classes"])  # ln(C)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self._train_correct += (logits.detach().argmax(1) == labels).sum()
        self._train_seen += len(labels)
        self.track_loss(loss.detach())
        return loss

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._train_correct = torch.zeros((), dtype=torch.long, device=self.device)
        self._train_seen = 0

    def train_epoch_metrics(self) -> dict[str, Tensor]:
        return {TRAIN_ACC: self._train_correct.float() / max(1, self._train_seen)}

    def _evaluate_batch(self, batch: tuple[Tensor, Tensor], loss: MeanMetric, *metrics: Any) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss.update(F.cross_entropy(logits, labels), weight=len(labels))
        for metric in metrics:
            metric.update(logits, labels)
        return logits

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate_batch(batch, self.val_loss, self.val_scores)

    def on_validation_epoch_end(self) -> None:
        self.log_validation({VAL_LOSS: self.val_loss.compute(), **self.val_scores.compute()})
        self.val_loss.reset()
        self.val_scores.reset()

    def on_test_epoch_start(self) -> None:
        self._misclassified: list[tuple[Tensor, Tensor, Tensor]] = []
        self._kept = 0

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        logits = self._evaluate_batch(batch, self.test_loss, self.test_scores, self.test_confusion)
        if self._kept < self.keep_misclassified:  # a few examples for the report, taken as they come
            images, labels = batch
            wrong = (logits.argmax(1) != labels).nonzero().flatten()[: self.keep_misclassified - self._kept]
            if len(wrong):
                self._misclassified.append((images[wrong].cpu(), labels[wrong].cpu(), logits[wrong].argmax(1).cpu()))
                self._kept += len(wrong)

    def on_test_epoch_end(self) -> None:
        self.log_dict({TEST_LOSS: self.test_loss.compute(), **self.test_scores.compute()})
        misclassified = [torch.cat(parts) for parts in zip(*self._misclassified, strict=True)] if self._kept else []
        self.test_results = {"confusion": self.test_confusion.compute().cpu(), "misclassified": misclassified}
        for metric in (self.test_loss, self.test_scores, self.test_confusion):
            metric.reset()
