"""The one way figures are made and saved: matplotlib on the Agg backend, rendered once, written as PNG and
logged to TensorBoard as the same pixels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display is ever needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


class _AtStep:
    """A SummaryWriter whose images default to ``step``: a run's report figures sit at the step of the metrics
    they belong to (its last training step), not at 0."""

    def __init__(self, writer: Any, step: int) -> None:
        self.writer, self.step = writer, step

    def add_image(self, tag: str, image: Any, global_step: int | None = None, **kwargs: Any) -> None:
        self.writer.add_image(tag, image, global_step=self.step if global_step is None else global_step, **kwargs)

    def __getattr__(self, name: str) -> Any:  # add_histogram, add_graph… as the writer has them
        return getattr(self.writer, name)


def tensorboard_writers(loggers: Sequence[Any], step: int = 0) -> list[Any]:
    """The SummaryWriters among Lightning loggers (those that can take images), logging at ``step``."""
    return [_AtStep(logger.experiment, step) for logger in loggers if hasattr(logger.experiment, "add_image")]


def save_figure(
    figure: Any, path: Path | None, tag: str | None = None, writers: Sequence[Any] = (), dpi: float | None = None
) -> None:
    """Render once; write the PNG (when ``path``) and log the same pixels to each TensorBoard writer under
    ``tag`` (add_figure would render again); then close the figure."""
    import numpy as np
    from PIL import Image

    if dpi is not None:
        figure.set_dpi(dpi)
    figure.canvas.draw()
    rgb = np.asarray(figure.canvas.buffer_rgba())[..., :3]
    if path is not None:
        from mnistlab.core.files import atomic_write

        atomic_write(Path(path), lambda f: Image.fromarray(rgb).save(f, format="PNG", optimize=False))
    for writer in writers if tag else ():
        writer.add_image(tag, rgb, dataformats="HWC")
    pyplot().close(figure)
