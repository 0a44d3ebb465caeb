"""Errors a user can fix. Entry points print their message as one line and exit non-zero."""

import sys
from typing import NoReturn


class MnistlabError(Exception):
    """Base class: the message alone must tell the user what to do."""


class ConfigError(MnistlabError):
    """A config value is invalid: the message names the key, the value and what is allowed."""


class DataError(MnistlabError):
    """Data is missing or unreadable: the message names the folder and files."""


class LossDivergedError(MnistlabError):
    """The training loss became NaN or infinite: the run is stopped at once."""


def exit_with(message: object) -> NoReturn:
    """What every entry point does with a user error: one line on stderr, exit status 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
