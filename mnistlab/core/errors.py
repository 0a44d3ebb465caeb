"""Errors a user can fix, and the one wrapper every command uses to turn them into one line and exit 2."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn, TypeVar

T = TypeVar("T")


class MnistlabError(Exception):
    """Base class: the message alone must tell the user what to do."""


class ConfigError(MnistlabError, ValueError):
    """A config value is invalid: the message names the key, the value and what is allowed."""


class DataError(MnistlabError):
    """Data is missing or unreadable: the message names the folder and files."""


class LossDivergedError(MnistlabError):
    """The training loss became NaN or infinite: the run is stopped at once."""


class TrialPruned(MnistlabError):
    """A search's pruner stopped this trial: not a failure, the search goes on."""


class BusyError(MnistlabError):
    """Another process writes into the same run or sweep dir."""


class Interrupted(BaseException):
    """SIGTERM (docker stop, timeout, SLURM preemption) or SIGINT (Ctrl-C) arrived: the run records how far it
    got and the process exits with 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)

    def __reduce__(self) -> tuple:  # crosses process boundaries (joblib, submitit) as itself
        return (Interrupted, (self.signum,))


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise :class:`Interrupted` (Lightning's own SIGTERM handling is
    chained before it during fit, and its KeyboardInterrupt handling would exit with status 1 and no record)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), at most ``limit`` characters."""
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:limit]


def user_error(err: BaseException | None) -> MnistlabError | None:
    """The user-fixable error behind ``err``: Hydra's ``instantiate`` and Lightning wrap what they call."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, MnistlabError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def exit_with(message: object) -> NoReturn:
    """One line on stderr, exit status 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_command(action: Callable[[], T]) -> T:
    """Run a command's body: a user error ends it with one line and exit status 2, a signal with exit status
    128 + its number; a bug keeps its traceback. Its console is quieted first (``mnistlab.core.quiet``), the one
    place that makes every command print each line once."""
    from mnistlab.core.quiet import quiet_console

    quiet_console()
    try:
        return action()
    except Interrupted as stop:
        print(f"interrupted by {stop.name}", file=sys.stderr)
        raise SystemExit(128 + stop.signum) from None
    except OSError as err:  # the machine said no: a folder that cannot be written, a full disk…
        if user_error(err) is not None:
            exit_with(user_error(err))
        where = f"{err.filename}: " if err.filename else ""
        exit_with(f"{where}{err.strerror or first_line(err)}")
    except Exception as raised:
        message = user_error(raised)
        if message is None:
            raise
        exit_with(message)
