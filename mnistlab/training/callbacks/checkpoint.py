"""Lightning's ModelCheckpoint, with restored paths that follow the run dir: a run dir that was moved or
copied resumes with its own best.ckpt and last.ckpt (Lightning would keep the old absolute best_model_path,
and forget the best score). Restored paths outside the checkpoint folder are dropped: Lightning deletes the
files it rotates out, and a checkpoint is data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def relocate(path: str, old_dir: str, new_dir: str | Path) -> str:
    """``path`` inside ``old_dir`` → the same file name inside ``new_dir`` (other paths unchanged)."""
    if path and old_dir and Path(path).parent == Path(old_dir):
        return str(Path(new_dir) / Path(path).name)
    return path


class RunCheckpoint(ModelCheckpoint):
    @property
    def state_key(self) -> str:
        """ModelCheckpoint's own key, so checkpoints written with Lightning's class restore their best score."""
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def _inside(self, path: Any) -> bool:
        if not isinstance(path, str) or not path:
            return False
        assert self.dirpath is not None  # setup() resolves it before Lightning restores a callback's state
        return Path(path).resolve().parent == Path(self.dirpath).resolve()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        new_dir = self.dirpath
        assert new_dir is not None  # setup() resolves it before Lightning restores a callback's state
        state_dict = dict(state_dict, dirpath=new_dir)
        for key in PATH_KEYS:
            path = relocate(state_dict.get(key) or "", old_dir, new_dir) if old_dir else state_dict.get(key)
            state_dict[key] = path if self._inside(path) else ""
        best_k = {
            relocate(k, old_dir, new_dir) if old_dir else k: v
            for k, v in (state_dict.get("best_k_models") or {}).items()
        }
        state_dict["best_k_models"] = {k: v for k, v in best_k.items() if self._inside(k)}
        super().load_state_dict(state_dict)

    # Lightning 2.6 writes last.ckpt only after an epoch whose score entered the top k; a resumed run (or a SLURM
    # job requeued after a preemption) must continue from the last finished epoch, so it is written every time
    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_last_every_time(trainer, at_train_epoch_end=False)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._save_last_every_time(trainer, at_train_epoch_end=True)

    def _save_last_every_time(self, trainer: Any, at_train_epoch_end: bool) -> None:
        """last.ckpt at the hook where Lightning saves, unless it saved at this step already."""
        if not self.save_last or self._should_save_on_train_epoch_end(trainer) != at_train_epoch_end:
            return
        if not self._should_skip_saving_checkpoint(trainer):  # skipped: sanity check, or saved at this step
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
