"""Between epochs, the thread count follows the load other processes put on the cores (see
``mnistlab.training.threads``): a job that started alone drops to fewer threads when a competing process
starts, and takes the cores back when it ends."""

from __future__ import annotations

import lightning as L

from mnistlab.training.threads import load_aware


class FollowLoad(L.Callback):
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        load_aware().update()
