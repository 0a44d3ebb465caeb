"""Checkpoints written atomically: a kill at any moment leaves the previous file, never a truncated one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mnistlab.core.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save through a temporary file, fsync and rename; load with ``weights_only=True`` only, onto the host
    (as Lightning's own loader does): a run saved on a GPU resumes on a machine without one, and each DDP rank
    moves the weights to its own device instead of all of them landing on the one they were saved from."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)  # never runs pickled code
