"""Detection (``model=fasterrcnn`` on ``data=mnist_detection``), a sibling of classification on the shared base
(optimizer, scheduler, LR finder, normalization from the train statistics, checkpoints). It adds what
detection needs: targets as box lists, mAP@0.5 and mAP@[.5:.95]
(torchmetrics' MeanAveragePrecision), and per-digit scores comparable with a classifier's:

- ``acc`` / ``f1``: every ground-truth digit is matched to the highest-scoring detection overlapping it
  with IoU >= 0.5; its label is the prediction, "(no detection)" when there is none. On canvases of one
  digit this is the classifier's accuracy and macro F1, with the digit also having to be found.
- ``loss``: torchvision's summed RPN and box-head losses (test only; the BatchNorm statistics are frozen).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score
from torchmetrics.detection import MeanAveragePrecision
from torchvision.ops import box_iou

from mnistlab.core.extras import require
from mnistlab.core.record import (
    TEST_ACC,
    TEST_F1,
    TEST_LOSS,
    TEST_MAP,
    TEST_MAP_50,
    VAL_ACC,
    VAL_F1,
    VAL_MAP,
    VAL_MAP_50,
)
from mnistlab.tasks.base import ImageTask

MATCH_IOU = 0.5


def to_targets(rows: Tensor) -> list[dict[str, Tensor]]:
    """``(N, K, 5)`` rows of (label, x1, y1, x2, y2), label -1 for padding → torchvision's target dicts."""
    targets = []
    for canvas in rows:
        kept = canvas[canvas[:, 0] >= 0]
        targets.append({"boxes": kept[:, 1:].float(), "labels": kept[:, 0].long()})
    return targets


def digit_predictions(detections: list[dict[str, Tensor]], targets: list[dict[str, Tensor]], none: int) -> Tensor:
    """For every ground-truth digit: the label of the best-scoring detection with IoU >= 0.5, else ``none``."""
    predicted = []
    for found, truth in zip(detections, targets, strict=True):
        if len(truth["boxes"]) == 0:
            continue
        labels = torch.full((len(truth["boxes"]),), none, dtype=torch.long, device=truth["labels"].device)
        if len(found["boxes"]):
            overlaps = box_iou(truth["boxes"], found["boxes"]) >= MATCH_IOU  # (truths, detections)
            scores = torch.where(overlaps, found["scores"].unsqueeze(0), torch.tensor(-1.0, device=overlaps.device))
            best_score, best = scores.max(dim=1)
            labels = torch.where(best_score >= 0, found["labels"][best], labels)
        predicted.append(labels)
    return torch.cat(predicted) if predicted else torch.zeros(0, dtype=torch.long)


class DetectionTask(ImageTask):
    """See the module docstring for the metrics. The detection loss has no ln(C) to compare with, and there
    are no per-digit scores while training: they need the detections of eval mode."""

    uses_channels_last = False  # torchvision's detectors take lists of images

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        num_classes = int(kwargs["num_classes"])
        self.none = num_classes  # the extra class "(no detection)" of the per-digit scores
        args: dict[str, Any] = {"num_classes": num_classes + 1, "validate_args": False}
        self.val_acc, self.test_acc = (
            MulticlassAccuracy(average="micro", **args),
            MulticlassAccuracy(average="micro", **args),
        )
        self.val_f1, self.test_f1 = MulticlassF1Score(average="none", **args), MulticlassF1Score(average="none", **args)
        self.test_loss = MeanMetric()
        self.test_confusion = MulticlassConfusionMatrix(**args)
        require("the detector's mAP (model=fasterrcnn)", "pycocotools")
        self.val_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
        self.test_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")

    @property
    def report_classes(self) -> list[str]:
        return [*super().report_classes, "(no detection)"]

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None) -> Any:
        return self.net(self.normalize(images), targets)

    def _macro_f1(self, metric: MulticlassF1Score) -> Tensor:
        return metric.compute()[: self.none].mean()  # the digits' F1, not that of "(no detection)"

    # -- training -------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, rows = batch
        losses = self(images, to_targets(rows))
        loss = sum(losses.values())
        self.track_loss(loss.detach())
        return loss

    # -- evaluation -----------------------------------------------------------------------------
    def _detect(self, batch: tuple[Tensor, Tensor], mean_ap: MeanAveragePrecision, *metrics: Any) -> tuple:
        images, rows = batch
        targets = to_targets(rows)
        detections = self(images)
        mean_ap.update(detections, targets)
        truth = torch.cat([t["labels"] for t in targets])
        predicted = digit_predictions(detections, targets, self.none)
        for metric in metrics:
            metric.update(predicted, truth)
        return images, targets

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._detect(batch, self.val_map, self.val_acc, self.val_f1)

    def on_validation_epoch_end(self) -> None:
        mean_ap = self.val_map.compute()
        self.log_validation(
            {
                VAL_MAP: mean_ap["map"],
                VAL_MAP_50: mean_ap["map_50"],
                VAL_ACC: self.val_acc.compute(),
                VAL_F1: self._macro_f1(self.val_f1),
            }
        )
        for metric in (self.val_map, self.val_acc, self.val_f1):
            metric.reset()

    def _eval_losses(self, images: Tensor, targets: list[dict[str, Tensor]]) -> Tensor:
        """The training losses on held-out data: the heads in training mode, the backbone's BatchNorm not."""
        detector: Any = self.net.detector  # torchvision's FasterRCNN
        heads = (detector, detector.rpn, detector.roi_heads)
        for module in heads:
            module.training = True
        try:
            return sum(self(images, targets).values())
        finally:
            for module in heads:
                module.training = False

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        images, targets = self._detect(batch, self.test_map, self.test_acc, self.test_f1, self.test_confusion)
        self.test_loss.update(self._eval_losses(images, targets), weight=len(images))

    def on_test_epoch_end(self) -> None:
        mean_ap = self.test_map.compute()
        self.log_dict(
            {
                TEST_LOSS: self.test_loss.compute(),
                TEST_ACC: self.test_acc.compute(),
                TEST_F1: self._macro_f1(self.test_f1),
                TEST_MAP: mean_ap["map"],
                TEST_MAP_50: mean_ap["map_50"],
            }
        )
        self.test_results = {"confusion": self.test_confusion.compute().cpu(), "misclassified": []}
        for metric in (self.test_loss, self.test_acc, self.test_f1, self.test_confusion, self.test_map):
            metric.reset()
