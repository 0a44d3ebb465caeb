"""Faster R-CNN as a plain ``nn.Module`` of the framework: torchvision's ``fasterrcnn_mobilenet_v3_large_320_fpn``,
no pretrained weights, digit classes + background, sized for small gray canvases on a CPU."""

from __future__ import annotations

from torch import Tensor, nn

from mnistlab.models.registry import register_model


@register_model("fasterrcnn", task="detection")
class FasterRCNN(nn.Module):
    """Takes normalized images ``(N, C, H, W)``; in training with ``targets`` returns torchvision's loss dict,
    otherwise a list of ``{"boxes", "labels", "scores"}`` with labels 0..num_classes-1 (the background of
    torchvision's label 0 is hidden). Gray input is repeated to the backbone's three channels.

    ``image_size`` resizes the input inside the detector (boxes are mapped back): the 320 model's feature
    maps have strides 16 and 32, so small canvases gain from being enlarged.

    The box head's hidden size (torchvision: 1024) and the proposal counts (2000 per image) are made smaller
    by default: on 128-px canvases with at most a few digits they cost time and buy nothing.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        representation_size: int = 256,
        box_batch_size_per_image: int = 64,
        proposals_train: int = 150,
        proposals_test: int = 50,
        detections_per_image: int = 10,
        score_threshold: float = 0.05,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

        channels, height, width = input_shape
        self.in_channels = channels
        self.detector = fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=num_classes + 1,
            min_size=image_size or min(height, width),
            max_size=image_size or max(height, width),
            image_mean=[0.0, 0.0, 0.0],  # the LightningModule normalizes with the train statistics
            image_std=[1.0, 1.0, 1.0],
            box_batch_size_per_image=box_batch_size_per_image,
            rpn_pre_nms_top_n_train=2 * proposals_train,
            rpn_post_nms_top_n_train=proposals_train,
            rpn_pre_nms_top_n_test=2 * proposals_test,
            rpn_post_nms_top_n_test=proposals_test,
            box_detections_per_img=detections_per_image,
            box_score_thresh=score_threshold,
        )
        roi_heads = self.detector.roi_heads
        pooled = roi_heads.box_roi_pool.output_size[0] * roi_heads.box_roi_pool.output_size[1]
        roi_heads.box_head = TwoMLPHead(self.detector.backbone.out_channels * pooled, representation_size)
        roi_heads.box_predictor = FastRCNNPredictor(representation_size, num_classes + 1)

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        if self.in_channels == 1:
            images = images.expand(-1, 3, -1, -1)
        if targets is not None:
            targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
        output = self.detector(list(images), targets)
        if isinstance(output, dict):  # losses
            return output
        return [{**o, "labels": o["labels"] - 1} for o in output]
