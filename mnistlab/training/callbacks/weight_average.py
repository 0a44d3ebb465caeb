"""An exponential moving average of the weights, the one validation, checkpoints and the test see."""

from __future__ import annotations

from itertools import chain
from typing import Any

import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def ema_with_warmup(averaged: list[Tensor], current: list[Tensor], num_averaged: int | Tensor, decay: float) -> None:
    """One EMA step, in place, over a group of same-dtype tensors, whose decay ramps up as
    ``(1 + n) / (10 + n)`` to ``decay``: after 50 steps the average already follows the weights (0.85), where a
    fixed 0.999 would still be 95 % the random initialization. Integer buffers (BatchNorm's batch counter)
    take the current value. One multi-tensor op a group: the rate is a host number, nothing is read back."""
    if not averaged[0].is_floating_point():
        torch._foreach_copy_(averaged, current)
        return
    n = int(num_averaged)
    torch._foreach_lerp_(averaged, current, 1 - min((1 + n) / (10 + n), decay))


class WarmupEMA(AveragedModel):
    """torch's ``AveragedModel`` (parameters and buffers) updated by ``ema_with_warmup``. torch's own update
    reads its step counter back to the host twice a step, a wait for the GPU each time, and regroups the
    tensors every step; this one counts steps on the host (read once, after a resume) and groups the tensors
    once. Its first update is an EMA step like the others (weight 0.9 on the new weights)."""

    def __init__(self, model: nn.Module, decay: float, device: torch.device) -> None:
        super().__init__(model, device=device, use_buffers=True)
        self.decay = decay
        self._steps: int | None = None
        self._groups: tuple[int, list[tuple[list[Tensor], list[Tensor]]]] | None = None

    def _grouped(self, model: nn.Module) -> list[tuple[list[Tensor], list[Tensor]]]:
        """The averaged and current tensors by (device, dtype); parameters and buffers are updated in place,
        so the lists stay valid for the model they were made from."""
        if self._groups is None or self._groups[0] != id(model):
            groups: dict[tuple[torch.device, torch.dtype], tuple[list[Tensor], list[Tensor]]] = {}
            averaged = chain(self.module.parameters(), self.module.buffers())
            for mine, theirs in zip(averaged, chain(model.parameters(), model.buffers()), strict=False):
                group = groups.setdefault((mine.device, mine.dtype), ([], []))
                group[0].append(mine.detach())
                group[1].append(theirs.detach())
            self._groups = (id(model), list(groups.values()))
        return self._groups[1]

    def update_parameters(self, model: nn.Module) -> None:
        if self._steps is None:
            self._steps = int(self.n_averaged)  # 0, or the count a resumed checkpoint holds
        for averaged_group, current_group in self._grouped(model):
            ema_with_warmup(averaged_group, current_group, self._steps, self.decay)
        self._steps += 1
        self.n_averaged += 1


class WeightAverage(WeightAveraging):
    """Lightning's weight averaging with an EMA of the weights and BatchNorm statistics (``ema.decay``):
    validation swaps the average in, checkpoints hold it as their ``state_dict`` (the current weights beside
    it, for resuming), and so the best checkpoint, the test, ``mnistlab.evaluate``, ``predict`` and ``serve``
    use the average. The decay warms up (``ema_with_warmup``), so short runs are not judged on weights that
    are still mostly their initialization.

    Lightning's callback also restores the *current* weights whenever a checkpoint is loaded once fit has run:
    testing the best checkpoint right after fit would then test the weights that were not averaged. Here the
    current weights are restored only when fit resumes.
    """

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        self.decay = float(decay)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """The average lives on the training device. Lightning's callback copies the module where it is at this
        point, which is before the strategy moves it to the GPU: the average would stay on the host, and every
        step would copy the weights back to it and wait for the GPU."""
        if stage == "fit":
            self._average_model = WarmupEMA(pl_module, self.decay, trainer.strategy.root_device)

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None  # after every optimizer step

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """The averaged weights and BatchNorm statistics; every other state (the best score so far and the
        metrics' states) is the run's current one, not the copy the average was made from at the start."""
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        current = checkpoint.get("current_model_state")
        if current is None:
            return
        averaged = {name for name, _ in pl_module.named_parameters()} | {name for name, _ in pl_module.named_buffers()}
        state = checkpoint["state_dict"]
        for key in state:
            if key not in averaged and key in current:
                state[key] = current[key]

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
