"""A callback that SIGKILLs its own process at a given step: a real crash in the middle of an epoch.

Loaded by the training subprocess through ``+callbacks.kill._target_=helpers.killer.KillAtStep`` with
``tests/`` on PYTHONPATH.
"""

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)
