"""What a test run learned, in numbers and pictures: confusion matrix, per-class scores, most-confused
pairs, misclassified examples, and the baselines a model must beat. Written to the run dir as PNG, CSV and
``report.md``; the scalars also go to metrics.json."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mnistlab.analysis.figures import pyplot, save_figure
from mnistlab.analysis.formatting import format_number, markdown_table
from mnistlab.core.files import write_csv_atomic, write_text_atomic
from mnistlab.core.record import (
    BEST_EPOCH,
    EPOCHS,
    HPARAMS,
    PARAMS,
    PEAK_MEMORY_MB,
    TEST,
    TEST_ACC,
    TEST_F1,
    TEST_LOSS,
    TEST_SAMPLES,
    TIME_PER_EPOCH_S,
    TRAIN_TIME_S,
    VAL_ACC_BEST,
)

ACCURACY_DECIMALS = 4  # scores in [0, 1] with fixed decimals, so that a table's columns line up


def per_class_scores(confusion: Tensor) -> list[dict[str, float]]:
    """Precision, recall, F1 and support of each class, from a confusion matrix (rows: true, cols: predicted)."""
    confusion = confusion.double()
    true_positive = confusion.diag()
    predicted, actual = confusion.sum(0), confusion.sum(1)
    precision = torch.where(predicted > 0, true_positive / predicted.clamp_min(1), torch.zeros_like(predicted))
    recall = torch.where(actual > 0, true_positive / actual.clamp_min(1), torch.zeros_like(actual))
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-12), 0.0)
    return [
        {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for p, r, f, s in zip(precision, recall, f1, actual, strict=True)
    ]


def most_confused(confusion: Tensor, classes: Sequence[str], top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` largest off-diagonal cells: (true class, predicted class, count)."""
    off = confusion.clone()
    off.fill_diagonal_(0)
    counts, flat = off.flatten().sort(descending=True)
    pairs: list[dict[str, Any]] = []
    for count, index in zip(counts.tolist(), flat.tolist(), strict=True):
        if count == 0 or len(pairs) == top:
            break
        true, pred = divmod(index, confusion.shape[1])
        pairs.append({"true": classes[true], "predicted": classes[pred], "count": int(count)})
    return pairs


def baselines(train_labels: Tensor, test_labels: Tensor, num_classes: int) -> dict[str, dict[str, float]]:
    """What needs no learning: always the train set's majority class, and a uniformly random guess.

    Accuracy and macro F1 are exact expectations; loss is the cross-entropy of predicting the train class
    frequencies (majority row) or the uniform distribution (ln C).
    """
    train_counts = torch.bincount(train_labels.cpu(), minlength=num_classes).double()
    test_freq = torch.bincount(test_labels.cpu(), minlength=num_classes).double() / len(test_labels)
    majority = int(train_counts.argmax())
    prior = train_counts / train_counts.sum()
    p_major = float(test_freq[majority])
    uniform_f1 = [2 * float(p) / num_classes / (float(p) + 1 / num_classes) for p in test_freq if p > 0]
    return {
        "majority": {
            "acc": p_major,
            "f1": (2 * p_major / (1 + p_major)) / num_classes,
            "loss": float(-(test_freq * prior.clamp_min(1e-12).log()).sum()),
        },
        "uniform": {"acc": 1 / num_classes, "f1": sum(uniform_f1) / num_classes, "loss": math.log(num_classes)},
    }


def labels_tested(confusion: Tensor) -> Tensor:
    """The true label of every image the model was tested on, from its confusion matrix (rows: true class):
    only those images, when a test saw part of the split (``trainer.limit_test_batches``)."""
    counts = confusion.sum(1).long().cpu()
    return torch.repeat_interleave(torch.arange(len(counts)), counts)


def plot_confusion(confusion: Tensor, classes: Sequence[str]):
    plt = pyplot()
    size = max(6.0, 0.6 * len(classes))
    figure, ax = plt.subplots(figsize=(size, size))
    ax.imshow(confusion.numpy(), cmap="Blues")
    if len(classes) <= 30:
        ax.set_xticks(range(len(classes)), classes, rotation=90)
        ax.set_yticks(range(len(classes)), classes)
        limit = confusion.max().item() / 2
        for (i, j), value in zip(
            torch.cartesian_prod(torch.arange(len(classes)), torch.arange(len(classes))).tolist(),
            confusion.flatten().tolist(),
            strict=True,
        ):
            ax.text(
                j,
                i,
                str(int(value)),
                ha="center",
                va="center",
                fontsize=10,
                color="white" if value > limit else "black",
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (test)")
    figure.tight_layout()
    return figure


def plot_misclassified(images: Tensor, true: Tensor, predicted: Tensor, classes: Sequence[str]):
    """One grid image (a single imshow: fast) with "true → predicted" under each tile."""
    from torchvision.utils import make_grid

    plt = pyplot()
    cols = min(len(images), 9)
    rows = math.ceil(len(images) / cols)
    pad = 2
    grid = make_grid(images.float().clamp(0, 1), nrow=cols, padding=pad, pad_value=1.0)
    tile_h, tile_w = images.shape[2] + pad, images.shape[3] + pad
    figure, ax = plt.subplots(figsize=(1.3 * cols, 1.6 * rows))  # at 100 dpi: labels 15 px tall
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray")
    for index, (t, p) in enumerate(zip(true.tolist(), predicted.tolist(), strict=True)):
        row, col = divmod(index, cols)
        ax.text(
            (col + 0.5) * tile_w,
            (row + 1) * tile_h,
            f"{classes[t]}→{classes[p]}",
            ha="center",
            va="top",
            fontsize=11,
            color="crimson",
        )
    ax.axis("off")
    ax.set_title("misclassified test images (true → predicted)", fontsize=12)
    figure.tight_layout()
    return figure


def write_evaluation(
    out_dir: Path,
    results: dict[str, Any],
    classes: Sequence[str],
    train_labels: Tensor,
    metrics: dict[str, Any],
    writers: Sequence[Any] = (),
) -> dict[str, Any]:
    """Write confusion_matrix.{png,csv}, per_class.csv, misclassified.png and report.md into ``out_dir``;
    log the pictures to the TensorBoard ``writers``; return the scalars for metrics.json. The baselines are
    scored on the images the model was tested on (``labels_tested``), not on the whole test split."""
    confusion: Tensor = results["confusion"].long()
    scores = per_class_scores(confusion)
    pairs = most_confused(confusion, classes)
    base = baselines(train_labels, labels_tested(confusion), len(classes))

    write_csv_atomic(
        out_dir / "confusion_matrix.csv",
        ["true \\ predicted", *classes],
        ([name, *row] for name, row in zip(classes, confusion.tolist(), strict=True)),
    )
    fields = ["precision", "recall", "f1", "support"]
    write_csv_atomic(
        out_dir / "per_class.csv",
        ["class", *fields],
        ([name, *(row[k] for k in fields)] for name, row in zip(classes, scores, strict=True)),
    )

    figures = {"confusion_matrix": plot_confusion(confusion, classes)}
    if results.get("misclassified"):
        images, true, predicted = results["misclassified"]
        figures["misclassified"] = plot_misclassified(images, true, predicted, classes)
    for name, figure in figures.items():
        save_figure(figure, out_dir / f"{name}.png", f"{TEST}{name}", writers)

    summary = {
        TEST_SAMPLES: int(confusion.sum()),
        "baseline/majority_acc": base["majority"]["acc"],
        "baseline/uniform_acc": base["uniform"]["acc"],
        "most_confused": pairs,
    }
    report = _report_markdown(metrics, scores, classes, pairs, base, "misclassified" in figures)
    if (out_dir / "lr_find.png").is_file() and metrics.get("lr_find/suggestion") is not None:
        report += (
            f"\n## Learning-rate finder\n\nSuggested lr {metrics['lr_find/suggestion']:.3g}; the run trained with "
            f"lr {metrics.get('lr', metrics['lr_find/suggestion']):.3g}.\n\n![LR finder](lr_find.png)\n"
        )
    report += environment_section(out_dir)
    write_text_atomic(out_dir / "report.md", report)
    return summary


def environment_section(run_dir: Path) -> str:
    """A short "which code, packages, machine and data" section from the run's provenance.json (none without)."""
    from mnistlab.core.provenance import read

    record = read(run_dir)
    if record is None:
        return ""
    machine, git, data = record.get("machine") or {}, record.get("git"), record.get("data") or {}
    if git:
        code = f"commit {str(git.get('commit'))[:12]}" + (
            " with uncommitted changes (uncommitted.patch)" if git.get("dirty") else ""
        )
    else:
        code = "not a git checkout"
    rows = [
        ["mnistlab", f"{record.get('mnistlab')} ({code})"],
        ["torch / Lightning", f"{machine.get('torch')} / {machine.get('lightning')} (Python {machine.get('python')})"],
        [
            "machine",
            f"{machine.get('host')}: {machine.get('device') or '—'}, {machine.get('torch_threads', '—')} threads",
        ],
        ["data", f"{data.get('dataset', '—')}, fingerprint {data.get('fingerprint') or '—'}"],
    ]
    return (
        "\n## Environment\n\n"
        + "\n".join(markdown_table(["", ""], rows))
        + "\n\nEvery installed package: packages.txt.\n"
    )


def _report_markdown(
    metrics: dict[str, Any],
    scores: list[dict[str, float]],
    classes: Sequence[str],
    pairs: list[dict[str, Any]],
    base: dict[str, dict[str, float]],
    has_examples: bool,
) -> str:
    hp = metrics.get(HPARAMS, {})

    def scores_of(values: dict[str, Any]) -> list[str]:
        return [format_number(values.get(k), ACCURACY_DECIMALS) for k in ("acc", "f1", "loss")]

    model = {"acc": metrics.get(TEST_ACC), "f1": metrics.get(TEST_F1), "loss": metrics.get(TEST_LOSS)}
    lines = [
        "# Run report",
        "",
        ", ".join(f"{k}={v}" for k, v in hp.items()),
        "",
        *markdown_table(
            ["", "accuracy", "macro F1", "loss"],
            [
                ["**model** (best checkpoint)", *scores_of(model)],
                ["majority class", *scores_of(base["majority"])],
                ["uniform random", *scores_of(base["uniform"])],
            ],
        ),
        "",
        f"Best validation accuracy {format_number(metrics.get(VAL_ACC_BEST), ACCURACY_DECIMALS)} at epoch "
        f"{metrics.get(BEST_EPOCH, '—')} of {metrics.get(EPOCHS, '—')}; training "
        f"{format_number(metrics.get(TRAIN_TIME_S), 1)} s ({format_number(metrics.get(TIME_PER_EPOCH_S), 2)} "
        f"s/epoch); peak memory {format_number(metrics.get(PEAK_MEMORY_MB), 0)} MB; "
        f"{metrics.get(PARAMS, '—')} parameters.",
        "",
        "## Confusion matrix",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "## Per-class scores",
        "",
        *markdown_table(
            ["class", "precision", "recall", "F1", "support"],
            (
                [
                    name,
                    *(format_number(s[k], ACCURACY_DECIMALS) for k in ("precision", "recall", "f1")),
                    str(s["support"]),
                ]
                for name, s in zip(classes, scores, strict=True)
            ),
        ),
        "",
        "## Most confused pairs",
        "",
        *markdown_table(["true", "predicted", "count"], ([p["true"], p["predicted"], str(p["count"])] for p in pairs)),
    ]
    if has_examples:
        lines += ["", "## Misclassified examples", "", "![misclassified](misclassified.png)"]
    return "\n".join(lines) + "\n"
