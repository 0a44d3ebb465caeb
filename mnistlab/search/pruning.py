"""A trial of ``hparams_search=optuna`` reports its validation metric every epoch to the study; when the pruner
says so, the run stops as ``pruned`` (not failed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L

from mnistlab.core.errors import TrialPruned
from mnistlab.core.record import MONITOR


class OptunaPruning(L.Callback):
    """Added by ``hparams_search=optuna`` (its YAML), built for every run of that config: a trial (``search.trial``
    set by the sweeper) loads its study from the sweep's own settings (storage, study name, pruner: Hydra's
    config of this job, never a file); any other run, such as a trial's config resumed on its own, leaves it
    inert."""

    def __init__(self, trial: int | None = None, monitor: str | None = None) -> None:
        self.trial: Any = None
        self.monitor = monitor or MONITOR
        if trial is None:
            return
        import optuna
        from hydra.core.hydra_config import HydraConfig

        from mnistlab.core.config import to_plain
        from mnistlab.search.sweeper import make_pruner, open_storage

        hydra = HydraConfig.get()
        sweeper = hydra.sweeper
        storage = open_storage(sweeper.get("storage"), Path(hydra.sweep.dir))
        name = sweeper.get("study_name", "mnistlab")
        study_id = storage.get_study_id_from_name(name)
        study = optuna.load_study(study_name=name, storage=storage, pruner=make_pruner(to_plain(sweeper.get("pruner"))))
        self.trial = optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, int(trial)))

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.trial is None or trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch + 1
        value = float(trainer.callback_metrics[self.monitor])
        self.trial.report(value, step=epoch)
        # a trial at its last epoch has finished its work: pruning it would throw away a value that may be the best
        last = trainer.max_epochs is not None and trainer.max_epochs > 0 and epoch >= trainer.max_epochs
        if not last and self.trial.should_prune():
            raise TrialPruned(f"pruned at epoch {epoch} with {self.monitor} {value:.4f}")
