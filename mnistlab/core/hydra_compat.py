"""Hydra 1.3 and 1.4 alike, with the same behaviour and no warnings on either.

Hydra 1.3 needs ``version_base="1.3"`` for the behaviour mnistlab is written for (without it, 1.1's: each job
runs in its output dir). Hydra 1.4 has that behaviour by default, deprecates the parameter (a warning on every
command) and drops it in 1.5: so it is passed to 1.3 only. Hydra 1.4 also warns on every ``instantiate`` (its
own of ``hydra.callbacks`` included) that names no execution whitelist. mnistlab instantiates only what the
command line and ``conf/`` set up, never what a file holds (``mnistlab.core.config.build``), which is what 1.3
does without a whitelist: so 1.4 is told to keep doing that, explicitly. The whitelist and ``isolate`` are
1.4's alone: 1.3 is called as before.
"""

from __future__ import annotations

import contextlib
from typing import Any

import hydra


def _minor(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version such as ``1.4.0rc3``."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


HYDRA_1_4 = _minor(hydra.__version__) >= (1, 4)

# the keyword arguments of initialize_config_dir that choose today's behaviour
VERSION_BASE: dict[str, Any] = {} if HYDRA_1_4 else {"version_base": "1.3"}


def _unchecked() -> Any:
    """Hydra 1.4's value for "instantiate any target, as 1.3 does" (None before 1.4)."""
    import hydra.utils as hydra_utils

    return getattr(hydra_utils, "UNSAFE_DISABLE_EXECUTION_CHECKS", None)


def instantiate_options() -> dict[str, Any]:
    """The keyword arguments of ``hydra.utils.instantiate`` that keep 1.3's behaviour on 1.4: any target, without
    the warning, and each target given its own copy of the config it is built from, as 1.3 does (1.4 passes the
    composed config's own nodes, read-only in structure: MLflow's logger, adding its run name to the ``tags`` it
    was given, fails on them)."""
    unchecked = _unchecked()
    return {} if unchecked is None else {"_execution_whitelist_": unchecked, "isolate": True}


def hydras_own_instantiations() -> contextlib.AbstractContextManager[Any]:
    """Around Hydra's ``run``/``multirun`` called from Python (what @hydra.main's options do for a command)."""
    import hydra.utils as hydra_utils

    unchecked, whitelist = _unchecked(), getattr(hydra_utils, "execution_whitelist", None)
    if unchecked is None or whitelist is None:
        return contextlib.nullcontext()
    return whitelist(unchecked)


# the keyword arguments of @hydra.main: today's behaviour, and Hydra's own instantiations (hydra.callbacks,
# job logging) as 1.3 does them
MAIN_OPTIONS: dict[str, Any] = {**VERSION_BASE}
if _unchecked() is not None:
    MAIN_OPTIONS["execution_whitelist"] = _unchecked()
