"""Lightning's ModelCheckpoint, with restored paths that follow the run dir: a run dir that was moved or
copied resumes with its own best.ckpt and last.ckpt (Lightning would keep the old absolute best_model_path,
and forget the best score)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint

PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")


def relocate(path: str, old_dir: str, new_dir: str) -> str:
    """``path`` inside ``old_dir`` → the same file name inside ``new_dir`` (other paths unchanged)."""
    if path and old_dir and Path(path).parent == Path(old_dir):
        return str(Path(new_dir) / Path(path).name)
    return path


class RunCheckpoint(ModelCheckpoint):
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        if old_dir and self.dirpath and old_dir != self.dirpath:
            state_dict = dict(state_dict, dirpath=self.dirpath)
            for key in PATH_KEYS:
                if isinstance(state_dict.get(key), str):
                    state_dict[key] = relocate(state_dict[key], old_dir, self.dirpath)
            best_k = state_dict.get("best_k_models") or {}
            state_dict["best_k_models"] = {relocate(k, old_dir, self.dirpath): v for k, v in best_k.items()}
        super().load_state_dict(state_dict)
