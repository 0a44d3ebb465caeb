"""What every command prints: each Lightning line once, none of its tips, no known deprecation noise of other
libraries. ``run_command`` (the wrapper of every command's body) calls :func:`quiet_console` before the body, so
train, evaluate, predict, export, serve, scratch and report print the same way; it is idempotent.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator

# warnings of other libraries that say nothing about the run
NOISE = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own use of torch's pytree
    r"The number of training batches \(\d+\) is smaller than the logging interval",  # tiny data: epoch logs only
    # Lightning's hint wherever SLURM's srun is installed: a run started without it is meant to be one process
    r"The `srun` command is available on your system but is not used",
)
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
# packages whose loggers add console handlers of their own: Lightning's, and submitit's (hydra/launcher=slurm: its
# stdout and stderr handlers printed each warning twice beside the command's console)
OWN_CONSOLE_LOGGERS = (*LIGHTNING_LOGGERS, "submitit")
# logger → the starts of its messages that say nothing about the run
DROPPED = {
    # Lightning's "💡 Tip: … try installing litlogger/litmodels" advertisements
    "lightning.pytorch.utilities.rank_zero": ("💡",),
    "lightning.fabric.utilities.rank_zero": ("💡",),
    # logger=mlflow, a new tracking store: a WARNING for what is expected (the experiment is created)
    "lightning.pytorch.loggers.mlflow": ("Experiment with name ",),
}


class _Drop(logging.Filter):
    """Drops a logger's records whose message starts with one of ``starts``."""

    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


class _CommandHandlersOnly(logging.Logger):
    """Lightning's package loggers. ``import lightning`` adds a console handler of its own, which printed every
    line a second time beside the command's (Hydra's console and log file) when a command imports Lightning
    after its logging is set up (evaluate does). A plain console handler is refused while the root logger has
    handlers, as ``lightning.pytorch`` does for its own; without them Lightning's is the only one and is kept
    (and a file or other handler someone adds on purpose always is)."""

    def addHandler(self, hdlr: logging.Handler) -> None:
        if type(hdlr) is logging.StreamHandler and logging.root.handlers:
            return
        super().addHandler(hdlr)


def quiet_console() -> None:
    """Lightning logs through the command's handlers only (console + <run dir>/<command>.log), without its tips,
    whether it is imported before or after this call; known warnings of other libraries are silenced."""
    configured = bool(logging.root.handlers)
    for name in OWN_CONSOLE_LOGGERS:
        logger = logging.getLogger(name)
        if type(logger) is logging.Logger:  # before `import lightning` too: its handler is then never added
            logger.__class__ = _CommandHandlersOnly
        if configured:  # imported earlier: the handler it added goes
            logger.handlers.clear()
            logger.propagate = True
    for name, starts in DROPPED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop(starts))
    for message in NOISE:
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("matplotlib.category").setLevel(logging.WARNING)  # "Using categorical units…" notices
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables…"


# trackio's prints that say nothing the run's log does not (logger=trackio logs where its store is, in one line)
TRACKIO_PRINTS = (
    "* Trackio project initialized",
    "* Trackio metrics logged to",
    "* View dashboard by running",
    'trackio show --project "',
    "* or by running in Python: trackio.show(",
    "* Created new run",
    "* Resumed existing run",
    "* psutil detected",
    "* NVIDIA GPU detected",
    "* Apple Silicon detected",
    "* Run finished. Uploading logs to Trackio",
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@contextlib.contextmanager
def dropped_prints(starts: tuple[str, ...]) -> Iterator[None]:
    """What the block prints to stdout, less the lines that start with one of ``starts`` (colours ignored): for
    libraries that ``print`` their notices (trackio) rather than log them. The other lines are printed after the
    block, also when it raises."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        kept = [line for line in buffer.getvalue().splitlines() if not _ANSI.sub("", line).startswith(starts)]
        if kept:
            print("\n".join(kept))
