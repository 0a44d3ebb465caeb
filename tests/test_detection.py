"""Seed 002: digit canvases with boxes, Faster R-CNN, and the CNN vs Faster R-CNN comparison."""

from __future__ import annotations

import json

import pytest
import torch
from helpers.cli import FAST, run_cli

from mnistlab.core.errors import ConfigError
from mnistlab.data.detection import MNISTDetectionDataModule, compose_canvases
from mnistlab.tasks.detection import digit_predictions, to_targets


def digits(n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """28×28 frames with a 12×16 block of ink at rows 6..21, cols 8..19: its box is known exactly."""
    images = torch.zeros(n, 1, 28, 28, dtype=torch.uint8)
    images[:, :, 6:22, 8:20] = 255
    return images, torch.arange(n) % 10


def test_canvases_are_seeded_and_boxes_hold_their_digits():
    images, labels = digits()
    canvases, targets = compose_canvases(images, labels, 40, 96, (1, 4), (28, 56), seed=3)
    again, same = compose_canvases(images, labels, 40, 96, (1, 4), (28, 56), seed=3)
    assert torch.equal(canvases, again) and torch.equal(targets, same)
    assert canvases.shape == (40, 1, 96, 96) and targets.shape == (40, 4, 5)
    counts = (targets[..., 0] >= 0).sum(1)
    assert counts.min() >= 1 and counts.max() <= 4 and len(set(counts.tolist())) > 1
    ink = canvases[:, 0] > 64
    for canvas, rows in zip(ink, targets, strict=True):
        covered = torch.zeros_like(canvas)
        for label, x1, y1, x2, y2 in rows[rows[:, 0] >= 0].tolist():
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96 and 0 <= label <= 9
            box = canvas[int(y1) : int(y2), int(x1) : int(x2)]
            assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()  # tight
            covered[int(y1) : int(y2), int(x1) : int(x2)] = True
        assert not (canvas & ~covered).any()  # no ink outside the boxes
    other, _ = compose_canvases(images, labels, 40, 96, (1, 4), (28, 56), seed=4)
    assert not torch.equal(canvases, other)


def test_datamodule_caches_canvases_and_serves_both_tasks(tiny_data):
    common = {"data_dir": str(tiny_data), "canvas_size": 64, "digit_size": [20, 40], "val_size": 10}
    sizes = {"train": 60, "val": 20, "test": 20}
    dm = MNISTDetectionDataModule(num_canvases=sizes, **common)
    dm.setup("fit")
    assert dm.input_shape == (1, 64, 64) and dm.classes[3] == "3"
    assert [len(dm.splits[s][0]) for s in ("train", "val", "test")] == [60, 20, 20]
    cache = dm.cache_file()
    assert cache.is_file() and cache.parent.name == "mnist_detection"
    stamp = cache.stat().st_mtime_ns
    boxes = dm.splits["train"][1]
    assert boxes.shape == (60, 5, 5)
    assert dm.class_labels("train").tolist() == boxes[..., 0][boxes[..., 0] >= 0].long().tolist()

    single = MNISTDetectionDataModule(task="classification", num_digits=[1, 1], num_canvases=sizes, **common)
    single.setup("fit")
    images, labels = single.splits["test"]
    assert labels.dtype == torch.int64 and labels.shape == (20,) and images.shape == (20, 1, 64, 64)
    assert cache.stat().st_mtime_ns == stamp  # another settings' canvases went to another file

    with pytest.raises(ConfigError, match=r"data.task=classification needs one digit per canvas"):
        MNISTDetectionDataModule(task="classification", **common)
    with pytest.raises(ConfigError, match=r"data.task='segmentation' is not one of detection, classification"):
        MNISTDetectionDataModule(task="segmentation", **common)
    with pytest.raises(ConfigError, match=r"data.augment.rotation is not supported with data.task=detection"):
        MNISTDetectionDataModule(augment={"rotation": 10.0, "perspective_p": 0.5}, **common)


def test_digit_predictions_need_overlap_and_take_the_best_score():
    rows = torch.tensor([[[3, 0, 0, 10, 10], [7, 20, 20, 30, 30], [-1, -1, -1, -1, -1]]], dtype=torch.float32)
    targets = to_targets(rows)
    assert targets[0]["labels"].tolist() == [3, 7]
    detections = [
        {
            "boxes": torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], dtype=torch.float32),
            "scores": torch.tensor([0.4, 0.9, 0.99]),
            "labels": torch.tensor([3, 5, 7]),
        }
    ]
    # digit 3: two overlapping detections, the better-scored says 5; digit 7: nothing overlaps → "none" (10)
    assert digit_predictions(detections, targets, none=10).tolist() == [5, 10]


@pytest.mark.slow
def test_cnn_vs_rcnn_sweep_reports_both_models(tiny_data, tmp_path):
    """`-m experiment=cnn_vs_rcnn` on tiny data: both runs complete, one table compares accuracy, macro F1,
    loss and training time, and the detector logs mAP; its checkpoint re-tests with mnistlab.evaluate."""
    run_cli(
        "mnistlab.train",
        "-m",
        "experiment=cnn_vs_rcnn",
        *FAST,
        "trainer.max_epochs=1",
        "data.canvas_size=64",
        "data.digit_size=[20,40]",
        "data.num_canvases.train=48",
        "data.num_canvases.val=16",
        "data.num_canvases.test=16",
        "data.batch_size=16",
        "scheduler=none",
        f"hydra.sweep.dir={tmp_path}",
        data_dir=tiny_data,
        timeout=600,
    )
    runs = {json.loads((tmp_path / j / "metrics.json").read_text())["hparams"]["model"]: j for j in ("0", "1")}
    assert set(runs) == {"cnn3", "fasterrcnn"}
    rcnn = json.loads((tmp_path / runs["fasterrcnn"] / "metrics.json").read_text())
    for key in ("test/acc", "test/f1", "test/loss", "test/map", "test/map_50", "train_time_s"):
        assert isinstance(rcnn[key], float), key
    assert 0 <= rcnn["test/map_50"] <= 1 and rcnn["test/samples"] == 16  # one digit per canvas
    cnn = json.loads((tmp_path / runs["cnn3"] / "metrics.json").read_text())
    assert cnn["test/samples"] == 16 and "test/map" not in cnn
    report = (tmp_path / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| rank |"))
    for title in ("model", "test acc", "test F1", "test loss", "test mAP@0.5", "train s"):
        assert title in header
    assert "| cnn3 |" in report and "| fasterrcnn |" in report

    ckpt = tmp_path / runs["fasterrcnn"] / "checkpoints" / "best.ckpt"
    result = run_cli("mnistlab.evaluate", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'eval'}", data_dir=tiny_data)
    assert "test/acc:" in result.stdout
    evaluation = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert evaluation["test/map_50"] == pytest.approx(rcnn["test/map_50"], abs=1e-6)
    refused = run_cli("mnistlab.predict", f"ckpt_path={ckpt}", "inputs=[x.png]", check=False)
    assert refused.returncode == 2
