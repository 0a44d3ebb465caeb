"""Checkpoints written atomically: a kill at any moment leaves the previous file, never a truncated one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mnistlab.core.files import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save through a temporary file, fsync and rename; load with ``weights_only=True`` only."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return torch.load(path, map_location=map_location, weights_only=True)  # never runs pickled code
