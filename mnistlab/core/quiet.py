"""What every command prints: each Lightning line once, none of its tips, no known deprecation noise of other
libraries. ``run_command`` (the wrapper of every command's body) calls :func:`quiet_console` before the body, so
train, evaluate, predict, export, serve, scratch and report print the same way; it is idempotent.
"""

from __future__ import annotations

import logging
import warnings

# warnings of other libraries that say nothing about the run
NOISE = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own use of torch's pytree
    r"The number of training batches \(\d+\) is smaller than the logging interval",  # tiny data: epoch logs only
)
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
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
    for name in LIGHTNING_LOGGERS:
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
