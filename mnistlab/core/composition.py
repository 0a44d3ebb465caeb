"""Hydra's own composition errors (a misspelt key, a group the command does not have, an option that is not a
preset, an override that does not parse) as one line on stderr and exit status 2, naming the closest valid key or
option, as every other config error is reported (Hydra's own message spans several lines and exits 1).

Every Hydra command's ``cli()`` runs its ``main`` through :func:`run_hydra_command`; ``mnistlab.api`` turns the
same errors into a :class:`ConfigError` with the same message (:func:`explain`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mnistlab.core.config import CONFIG_DIR, closest, not_a_preset, presets
from mnistlab.core.errors import exit_with, first_line

# Hydra's messages, as hydra 1.3 words them
_NOT_IN_DEFAULTS = re.compile(r"Could not override '([^']+)'\. No match in the defaults list")
_NOT_A_KEY = re.compile(r"Could not override '([^']+)'\.")
_NOT_FOUND = re.compile(r"Could not find '([^']+)'")


def _compose(config_name: str, overrides: list[str]) -> Any:
    """The config ``config_name`` composes to with ``overrides`` (hydra section included), or None."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from mnistlab.core.hydra_compat import VERSION_BASE

    try:
        instance = GlobalHydra.instance()
        if instance.is_initialized() and instance.hydra is not None:
            return instance.hydra.compose_config(config_name, overrides, run_mode=RunMode.RUN)
        with initialize_config_dir(config_dir=CONFIG_DIR, **VERSION_BASE):
            return compose(config_name, overrides, return_hydra_config=True)
    except Exception:
        return None


def _composed(config_name: str, overrides: Sequence[str], without: str) -> Any:
    """The config with the command line's other overrides (sweeps and the failing one left out), else with none."""
    kept = [o for o in overrides if o.partition("=")[0].lstrip("+~") != without and "," not in o.partition("=")[2]]
    return _compose(config_name, kept) or _compose(config_name, [])


def dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key of a config as a dotted path (``trainer``, ``trainer.max_epochs``, …), the hydra section aside."""
    from omegaconf import DictConfig

    keys: list[str] = []
    if isinstance(node, DictConfig):
        for key in node:
            path = f"{prefix}{key!s}"
            if path == "hydra":
                continue
            keys.append(path)
            keys.extend(dotted_keys(node._get_node(key), f"{path}."))
    return keys


def _unparsable(overrides: Sequence[str]) -> str | None:
    """The first override Hydra's grammar rejects."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_override(override)
        except Exception:
            return override
    return None


def _groups(cfg: Any) -> list[str]:
    """The config groups a composed config chose from (hydra/… aside)."""
    choices = cfg.hydra.runtime.choices if cfg is not None else {}
    return sorted(g for g in choices if g != "hydra" and not str(g).startswith("hydra/"))


def _our_error(err: BaseException | None) -> BaseException | None:
    """The first of mnistlab's own user errors in ``err``'s chain of causes, or None."""
    from mnistlab.core.errors import MnistlabError

    seen = 0
    while err is not None and seen < 20:
        if isinstance(err, MnistlabError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def explain(err: BaseException, config_name: str, overrides: Sequence[str]) -> str | None:
    """One line for a Hydra composition error of ``config_name`` composed with ``overrides``, naming the closest
    valid key or option; None when ``err`` is not one."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    ours = _our_error(err)
    if ours is not None:  # our own one-line error, raised inside Hydra (the sweeper's settings, say)
        return first_line(ours, limit=2000)  # its whole line: it names files and paths
    if isinstance(err, ValueError) and str(err).startswith("Config group override must be a string"):
        return _null_group(overrides)
    if not isinstance(err, ConfigCompositionException | OverrideParseException):
        return None
    text = str(err)
    command = f"mnistlab-{config_name}"
    if isinstance(err, OverrideParseException):
        return f"{_unparsable(overrides) or 'an override'} does not parse: {first_line(err)}"
    if isinstance(err, MissingConfigException) and (found := _NOT_FOUND.search(text)):
        group, _, option = found.group(1).rpartition("/")
        if presets(group):
            return not_a_preset(group, option)
        near = closest(group, _groups(_compose(config_name, [])))
        return f"{group} is not a config group of {command}" + (f"; did you mean {near}?" if near else "")
    if found := _NOT_IN_DEFAULTS.search(text):
        group = found.group(1)
        groups = _groups(_composed(config_name, overrides, group))
        near = closest(group, groups)
        if near:
            return f"{group} is not a config group of {command}; did you mean {near}?"
        return f"{command} has no {group} group; its groups: {', '.join(groups) or 'none'}"
    if (found := _NOT_A_KEY.search(text)) and isinstance(err.__cause__, ConfigAttributeError | ConfigKeyError):
        key = found.group(1).lstrip("+~")
        keys = dotted_keys(_composed(config_name, overrides, key))
        parent = key.rpartition(".")[0]
        if parent in keys and not any(k.startswith(f"{parent}.") for k in keys):  # an empty node (evaluate's data)
            return f"{key} is not a key of {command}'s config yet; set it with ++{key}=…"
        near = closest(key, keys)
        if near:
            return f"{key} is not a key of {command}'s config; did you mean {near}?"
        return f"{key} is not a key of {command}'s config; add a new key with +{key}=…"
    lines = [first_line(err)] + ([first_line(err.__cause__)] if err.__cause__ is not None else [])
    return " ".join(lines)


def _null_group(overrides: Sequence[str]) -> str:
    """``callbacks=null`` on the command line (Hydra's ValueError): a group's choice cannot be null."""
    for override in overrides:
        key, _, value = override.partition("=")
        group = key.lstrip("+~")
        if value == "null" and "." not in group:
            options = presets(group)
            choose = f"choose one of {', '.join(options)}" if options else "choose one of its presets"
            return f"{group}=null does not choose a preset of the {group} group; {choose}"
    return "a config group's choice cannot be null; choose one of its presets"


def _overrides(argv: list[str]) -> list[str]:
    """The overrides of a Hydra command line, as Hydra's own parser reads them."""
    from hydra._internal.utils import get_args_parser

    with contextlib.suppress(SystemExit):
        return list(get_args_parser().parse_known_args(argv)[0].overrides or [])
    return []


@contextlib.contextmanager
def composition_errors_explained(config_name: str) -> Iterator[None]:
    """Within the block, Hydra's report of an error while composing ``config_name`` (several lines, exit 1) is
    replaced by one line and exit 2. Hydra prints errors in ``hydra._internal.utils.run_and_report``, which
    receives the exception; other errors are still reported by it, unchanged."""
    import hydra._internal.utils as hydra_utils

    report = hydra_utils.run_and_report

    def run_and_report(func: Callable[[], Any]) -> Any:
        def composed() -> Any:
            try:
                return func()
            except Exception as err:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":  # Hydra's switch for its whole report
                    raise
                try:
                    message = explain(err, config_name, _overrides(sys.argv[1:]))
                except Exception:  # explaining must never hide the error itself
                    message = None
                if message is None:
                    raise
                exit_with(message)

        return report(composed)

    hydra_utils.run_and_report = run_and_report
    try:
        yield
    finally:
        hydra_utils.run_and_report = report


def run_hydra_command(main: Callable[[], Any], config_name: str) -> None:
    """A ``@hydra.main`` command's ``main``, its composition errors reported as one line (exit status 2)."""
    with composition_errors_explained(config_name):
        main()
