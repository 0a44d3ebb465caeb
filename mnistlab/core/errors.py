"""Errors a user can fix, and the one wrapper every command uses to turn them into one line and exit 2."""

from __future__ import annotations

import sys
from collections.abc import Callable
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
    """Run a command's body: a user error ends it with one line and exit status 2; a bug keeps its traceback."""
    try:
        return action()
    except Exception as raised:
        err = user_error(raised)
        if err is None:
            raise
        exit_with(err)
