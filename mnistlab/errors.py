"""Errors a user can fix. Entry points print their message as one line and exit non-zero."""


class MnistlabError(Exception):
    """Base class: the message alone must tell the user what to do."""


class ConfigError(MnistlabError):
    """A config value is invalid: the message names the key, the value and what is allowed."""


class DataError(MnistlabError):
    """Data is missing or unreadable: the message names the folder and files."""


class LossDivergedError(MnistlabError):
    """The training loss became NaN or infinite: the run is stopped at once."""
