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


def tensorboard_writers(loggers: Sequence[Any]) -> list[Any]:
    """The SummaryWriters among Lightning loggers (those that can take images)."""
    return [logger.experiment for logger in loggers if hasattr(logger.experiment, "add_image")]


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
        Image.fromarray(rgb).save(path, optimize=False)
    for writer in writers if tag else ():
        writer.add_image(tag, rgb, global_step=0, dataformats="HWC")
    pyplot().close(figure)
