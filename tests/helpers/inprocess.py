"""A command's user errors checked in this process, in milliseconds instead of an interpreter start.

``command_error("train", [...])`` runs what ``mnistlab-train ...`` runs (the same Hydra composition through
``mnistlab.api``, the same validation and checks) and returns the line the command would print after
``error: `` (see ``mnistlab.core.errors.run_command``). The real work is refused while it runs: a Lightning
``Trainer``, a uvicorn server or the NumPy training of ``mnistlab-scratch`` raise :class:`StartedWork`, so a
case that stopped failing fails its test instead of training. The exit status and stderr of the real process
are checked by one subprocess case per command (tests/test_catalogue.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

COMMANDS = ("train", "evaluate", "predict", "serve", "export", "scratch", "report")


class StartedWork(AssertionError):
    """The command got past its checks to real work: the case did not fail where it should."""


def _refuse(what: str):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise StartedWork(f"{what} was started: the input was accepted")

    return refuse


def refuse_real_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """No training, evaluation, server or NumPy training can start in this test."""
    import lightning.pytorch as pl

    import mnistlab.scratch.numpy_models as numpy_models

    monkeypatch.setattr(pl.Trainer, "__init__", _refuse("a Lightning Trainer"))
    monkeypatch.setattr(numpy_models, "train", _refuse("the NumPy training of mnistlab-scratch"))
    try:
        import uvicorn
    except ImportError:
        pass
    else:
        monkeypatch.setattr(uvicorn, "run", _refuse("a uvicorn server"))


def run_command(command: str, args: Sequence[str]) -> Any:
    """What ``mnistlab-<command> *args`` does, as a Python call (no ``run_command`` wrapper, no exit)."""
    from mnistlab import api

    args = list(args)
    if command == "train":
        return api.train(args)
    if command == "evaluate":
        return api.evaluate(args)
    if command == "predict":
        return api.predict(args)
    if command == "serve":
        from mnistlab.serving.server import serve

        return api._hydra("serve", serve, args)
    if command == "export":
        from mnistlab.serving.export import export

        return api._hydra("export", export, args)
    if command == "scratch":
        from mnistlab.scratch.__main__ import run

        return api._hydra("scratch", run, args)
    if command == "report":
        from mnistlab.report import report

        return report(args)
    raise ValueError(f"no command {command!r}; one of {', '.join(COMMANDS)}")


def command_error(command: str, args: Sequence[str]) -> str:
    """The one line ``mnistlab-<command> *args`` prints after ``error: `` (exit status 2); fails the test when
    the command raises no user error (a bug's exception propagates with its traceback)."""
    from mnistlab.core.errors import first_line, user_error

    try:
        result = run_command(command, args)
    except StartedWork:
        raise
    except Exception as raised:
        err = user_error(raised)
        if err is not None:
            message = str(err)
        elif isinstance(raised, OSError):  # as run_command reports what the machine refused
            where = f"{raised.filename}: " if raised.filename else ""
            message = f"{where}{raised.strerror or first_line(raised)}"
        else:
            raise
    else:
        raise AssertionError(f"mnistlab-{command} {' '.join(args)} gave no error: {result!r}"[:2000])
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message
