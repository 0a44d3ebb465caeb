"""Lightning's LR finder, with its plot kept and its suggestion applied (lightning-hydra-template dropped it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from mnistlab.analysis.figures import save_figure, tensorboard_writers


def find_lr(
    trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule, tune: Any, out_dir: Path
) -> float | None:
    """Run ``Tuner.lr_find``; set ``model.lr`` to the suggestion; save ``lr_find.png``; log it.

    ``configure_optimizers`` reads ``model.lr``, so the suggestion reaches the optimizer (a Hydra partial
    alone would keep its own lr and silently ignore it).
    """
    from lightning.pytorch.tuner import Tuner

    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=float(tune.min_lr),
        max_lr=float(tune.max_lr),
        num_training=int(tune.num_training),
        attr_name="lr",
        update_attr=True,
    )
    for leftover in Path(trainer.default_root_dir).glob(".lr_find_*.ckpt"):
        leftover.unlink()
    if finder is None:
        return None
    suggestion = finder.suggestion()
    figure = finder.plot(suggest=True)
    save_figure(figure, out_dir / "lr_find.png", "lr_find", tensorboard_writers(trainer.loggers), dpi=100)
    return suggestion
