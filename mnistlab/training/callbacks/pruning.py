"""A trial of ``hparams_search=optuna`` reports its validation metric every epoch to the study; when the pruner
says so, the run stops as ``pruned`` (not failed)."""

from __future__ import annotations

from typing import Any

import lightning as L

from mnistlab.core.errors import TrialPruned
from mnistlab.core.record import MONITOR


class OptunaPruning(L.Callback):
    def __init__(self, storage: str, study: str, trial: int, monitor: str = MONITOR, pruner: Any = None) -> None:
        import optuna

        from mnistlab.search.sweeper import make_pruner

        store = optuna.storages.get_storage(storage)
        study_id = store.get_study_id_from_name(study)
        self.study = optuna.load_study(study_name=study, storage=store, pruner=make_pruner(pruner))
        self.trial = optuna.trial.Trial(self.study, store.get_trial_id_from_study_id_trial_number(study_id, int(trial)))
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch + 1
        value = float(trainer.callback_metrics[self.monitor])
        self.trial.report(value, step=epoch)
        if self.trial.should_prune():
            raise TrialPruned(f"pruned at epoch {epoch} with {self.monitor} {value:.4f}")
