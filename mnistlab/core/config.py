"""Config plumbing of the commands: where the YAML lives, one-line errors for unknown presets, and
``resume=`` expanded into the run's own overrides (read as data: overrides that name code are not replayed).
"""

from __future__ import annotations

import difflib
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mnistlab.core.compat import RECIPE_BEFORE, RENAMED_OVERRIDES
from mnistlab.core.errors import BusyError, ConfigError, first_line
from mnistlab.core.extras import require
from mnistlab.core.files import dir_busy, is_rank_zero
from mnistlab.core.readers import read_yaml

# The YAML ships inside the package (the repository's top-level conf/ is a link to it), so an installed wheel
# composes the same configs as a checkout.
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
# Hydra's instantiation keys: a config read back from a file (checkpoint, run dir) that holds one asks for code
CODE_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_", "_call_")
CODE_MARKERS = (*CODE_KEYS, "${", "@")  # in an override: code, an interpolation, or a package redirection
# the top-level keys of train.yaml that a resume replays from the run dir (never hydra.*, hydra/…, paths.*)
REPLAYED_ROOTS = {
    "data",
    "model",
    "optim",
    "scheduler",
    "trainer",
    "experiment",
    "hparams_search",
    "debug",
    "recipe",
    "seed",
    "test",
    "tune",
    "speed",
    "task_name",
    "loss",
    "ema",
}
# keys that name a place on disk or an object's wiring: never taken from a run dir (whoever wrote it could point a
# resumed run at another run's checkpoints or anywhere else); loggers and callbacks are not replayed at all
NEVER_REPLAYED = {
    "data_dir",
    "default_root_dir",
    "dirpath",
    "save_dir",
    "filename",
    "root",
    "csv",
    "logger",
    "callbacks",
    "plugins",
    "enable_checkpointing",
}
PRESET_ONLY = {"logger", "callbacks"}  # replayed as a preset's name (logger=many), never a key under them
RUN_CONFIG_FILES = ("config.yaml", "hydra.yaml", "overrides.yaml")  # what Hydra writes into <run dir>/.hydra
BEFORE_RESUME = "before-resume"  # their copy while a resumed run has not started cleanly yet

# paths.root_dir: the directory the command runs from (data/, outputs/ and multirun/ go there, never into the
# installed package); mnistlab_root is its older name, still found in the .hydra/ of earlier run dirs.
for _name in ("mnistlab_cwd", "mnistlab_root"):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, lambda: str(Path.cwd()))


def config_groups_help() -> str:
    """The config groups section of a command's ``--help`` (conf/hydra/help/mnistlab.yaml): the groups its own
    config chose from, each with its presets; "" for a command without groups."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    groups = sorted(g for g in HydraConfig.get().runtime.choices if g != "hydra" and not str(g).startswith("hydra/"))
    rows = [f"{group}: {', '.join(presets(group))}" for group in groups if presets(group)]
    return "== Config groups (pick one with group=option) ==\n" + "\n".join(rows) + "\n" if rows else ""


if not OmegaConf.has_resolver("mnistlab_config_groups"):
    OmegaConf.register_new_resolver("mnistlab_config_groups", config_groups_help)


def build(section: Any, **kwargs: Any) -> Any:
    """Hydra's ``instantiate``, the one place mnistlab calls it: for the config composed from the command line
    and conf/ only (trainer, loggers, callbacks), never for anything read back from a file."""
    from hydra.utils import instantiate

    return instantiate(section, **kwargs)


def build_all(section: Any) -> list[Any]:
    """``build`` for every entry of a ``callbacks``/``logger`` section that has a ``_target_`` (entries set to
    null are skipped)."""
    return [build(entry) for entry in (section or {}).values() if entry and entry.get("_target_")]


def to_plain(cfg: Any) -> Any:
    """Resolved plain containers: what checkpoints and metrics.json may hold."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


# presets that need an optional extra: group → choice → the modules it imports
NEEDS_EXTRA: dict[str, dict[str, tuple[str, ...]]] = {
    "hparams_search": {"optuna": ("optuna",)},
    "hydra/launcher": {
        "slurm": ("hydra_plugins.hydra_submitit_launcher",),
        "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher",),
        "submitit_local": ("hydra_plugins.hydra_submitit_launcher",),
    },
    "logger": {"mlflow": ("mlflow", "sqlalchemy", "alembic")},
    "data": {"tiny_imagenet": ("datasets",)},
    "model": {"fasterrcnn": ("pycocotools",)},
}


def prepare_train_overrides(argv: list[str]) -> list[str]:
    """What ``mnistlab-train`` checks on its raw command line before Hydra composes anything (another writer
    in the run or sweep dir, ``resume=`` expanded, unknown presets, missing extras); ``argv[0]`` is the program.
    """
    refuse_busy_dirs(argv[1:])
    argv = expand_rerun(expand_resume(argv))
    check_group_choices(argv[1:])
    return argv


def closest(word: str, options: Sequence[str]) -> str | None:
    """The option nearest to ``word`` (a misspelling of it), or None."""
    found = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return found[0] if found else None


def presets(group: str) -> list[str]:
    """The options of a config group: the YAML files of conf/<group>/ (``_``-prefixed bases excepted)."""
    folder = Path(CONFIG_DIR) / group
    return sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")) if folder.is_dir() else []


def not_a_preset(group: str, option: str) -> str:
    """``optim='adamx' is not a preset; did you mean optim=adam? choose one of adam, adamw, …``"""
    options = presets(group)
    near = closest(option, options)
    hint = f"did you mean {group}={near}? " if near else ""
    return f"{group}={option!r} is not a preset; {hint}choose one of {', '.join(options)}"


def check_group_choices(argv: list[str]) -> None:
    """``model=foo`` where conf/model/foo.yaml does not exist: one line listing the options, before Hydra
    (whose own message spans a screen); a preset whose optional extra is missing: one line naming the install.
    """
    conf = Path(CONFIG_DIR)
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        if not sep:
            continue
        for choice, modules in NEEDS_EXTRA.get(group, {}).items():
            if choice in value.split(","):
                require(f"{group}={choice}", *modules)
        if "." in group or "/" in group or not (conf / group).is_dir() or "," in value or not value:
            continue
        if value != "null" and not (conf / group / f"{value}.yaml").is_file():
            raise ConfigError(not_a_preset(group, value))


def read_overrides(run_dir: Path) -> list[str]:
    """A run's ``.hydra/overrides.yaml`` as plain strings, never resolved (ConfigError when it is not a list
    of strings)."""
    overrides_file = Path(run_dir) / ".hydra" / "overrides.yaml"
    try:
        saved = read_yaml(overrides_file)  # plain data: no aliases (a 400-byte file must not expand to billions)
    except Exception as err:
        raise ConfigError(f"{overrides_file} is not readable ({first_line(err)}); restore it from a copy") from None
    if not isinstance(saved, list) or not all(isinstance(o, str) for o in saved):
        raise ConfigError(f"{overrides_file} must be a list of overrides such as model=cnn")
    return saved


def _replayable(override: str) -> str | None:
    """The override as a resume replays it, or None: only values of train.yaml's own keys and group choices
    of conf/ (a run dir is data: whoever wrote it must not choose what runs or where files go)."""
    if any(marker in override for marker in CODE_MARKERS):
        return None
    key, sep, value = override.partition("=")
    name = key.lstrip("+~")
    name = RENAMED_OVERRIDES.get(name, name)
    root = name.split(".")[0].split("/")[0]
    if root in PRESET_ONLY and name == root and value not in ("null", ""):
        pass  # one of our logger or callback presets, by name (checked below to exist in conf/)
    elif not sep or root not in REPLAYED_ROOTS or "/" in name or NEVER_REPLAYED & set(name.split(".")):
        return None
    group = Path(CONFIG_DIR) / name
    if "." not in name and group.is_dir() and value != "null" and not (group / f"{value}.yaml").is_file():
        return None
    return f"{key[: len(key) - len(key.lstrip('+~'))]}{name}={value}"


def recipe_pins(run_dir: Path) -> list[str]:
    """Overrides that hold a run to the recipe its ``.hydra/config.yaml`` recorded for ``RECIPE_BEFORE`` (read as
    YAML data: only numbers and null are taken; a value the run lacks is the one it ran with then, if known)."""
    try:
        config = read_yaml(Path(run_dir) / ".hydra" / "config.yaml")
    except Exception:  # no readable record: the saved overrides alone
        return []
    pins = []
    for key, before in RECIPE_BEFORE.items():
        node: Any = config
        for part in key.split("."):
            node = node.get(part, ...) if isinstance(node, dict) else ...
        value = before if node is ... else node
        if value is None:
            pins.append(f"{key}=null")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            pins.append(f"{key}={value!r}")
    return pins


def _short(text: str, limit: int = 200) -> str:
    """Text from a run dir as a message quotes it: at most ``limit`` characters."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def saved_overrides(run_dir: Path) -> list[str]:
    """The overrides a run was started with that a resume replays; the others are left out with a note."""
    try:
        saved = read_overrides(run_dir)
    except ConfigError as err:
        raise ConfigError(f"resume={run_dir}: {err}") from None
    kept = []
    for override in saved:
        replayed = _replayable(override)
        if replayed is None:
            print(
                f"note: resume does not replay {_short(override)!r} from {run_dir}/.hydra/overrides.yaml "
                "(run dirs hold values of mnistlab's own keys, not code or paths); pass it again on the command line "
                "to keep it",
                file=sys.stderr,
            )
        else:
            kept.append(replayed)
    return kept


def expand_resume(argv: list[str]) -> list[str]:
    """``resume=<run dir>`` → the run's own overrides, then the new ones, in the same run dir, from its
    ``checkpoints/last.ckpt`` (``resume`` stays set: the pipeline restores the whole trainer state). Hydra
    then composes the same config again (later overrides win) and writes the combined overrides back, so a
    run can be resumed any number of times."""
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    run_dir = Path(resume[-1].partition("=")[2]).expanduser()
    last = run_dir / "checkpoints" / "last.ckpt"
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        raise ConfigError(f"resume={run_dir} is not a run dir (no .hydra/overrides.yaml)")
    if not last.is_file():
        raise ConfigError(
            f"resume={run_dir} has no checkpoints/last.ckpt to resume from (the run ended before its first epoch)"
        )
    dropped = ("resume=", "ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir=", "hydra.job.", "++ckpt_path=")
    saved = [*recipe_pins(run_dir), *(o for o in saved_overrides(run_dir) if not o.startswith(dropped))]
    new = [a for a in argv[1:] if not a.startswith("resume=")]
    if is_rank_zero():  # other DDP ranks re-run this in the run dir that rank 0 holds
        keep_run_config(run_dir)  # refuse_busy_dirs has made sure no other process writes there
    run = run_dir.resolve()
    return [argv[0], *saved, *new, f"resume={run}", f"ckpt_path={last.resolve()}", f"hydra.run.dir={run}"]


RERUN_DROPPED = ("resume=", "rerun=", "ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir=", "hydra.job.", "++ckpt_path=")


def expand_rerun(argv: list[str]) -> list[str]:
    """``rerun=<run dir>`` → the run's replayable overrides, then the new ones, then ``rerun=<resolved dir>``
    (the pipeline compares provenance against it); a new run dir, as for any run."""
    given = [a for a in argv[1:] if a.startswith("rerun=")]
    if not given:
        return argv
    if any(a.startswith("resume=") for a in argv[1:]):
        raise ConfigError("give resume=<run dir> (continue it in place) or rerun=<run dir> (train it again), not both")
    run_dir = Path(given[-1].partition("=")[2]).expanduser()
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        raise ConfigError(f"rerun={run_dir} is not a run dir (no .hydra/overrides.yaml)")
    saved = [*recipe_pins(run_dir), *(o for o in saved_overrides(run_dir) if not o.startswith(RERUN_DROPPED))]
    new = [a for a in argv[1:] if not a.startswith("rerun=")]
    return [argv[0], *saved, *new, f"rerun={run_dir.resolve()}"]


def keep_run_config(run_dir: Path) -> None:
    """Copy the run's .hydra files aside before Hydra rewrites them for a resume (see ``settle_run_config``)."""
    hydra_dir = Path(run_dir) / ".hydra"
    keep = hydra_dir / BEFORE_RESUME
    if keep.is_dir():  # left by a resume that died before it could settle: that copy is the good one
        return
    keep.mkdir()
    for name in RUN_CONFIG_FILES:
        if (hydra_dir / name).is_file():
            shutil.copy2(hydra_dir / name, keep / name)


def settle_run_config(run_dir: Path, started: bool) -> None:
    """A resumed run that started cleanly keeps Hydra's new files; one that failed before gets its old ones
    back, so a bad override is never saved into the run for good."""
    hydra_dir = Path(run_dir) / ".hydra"
    keep = hydra_dir / BEFORE_RESUME
    if not keep.is_dir() or not is_rank_zero():
        return
    if not started:
        for saved in keep.iterdir():
            shutil.copy2(saved, hydra_dir / saved.name)
    shutil.rmtree(keep, ignore_errors=True)


def refuse_busy_dirs(argv: list[str]) -> None:
    """Before Hydra writes anything into a run dir (hydra.run.dir or resume) or a sweep dir: one line when
    another process is writing there (a sweep with skip_completed=true shares its dir by design)."""
    if not is_rank_zero():  # a DDP rank that Lightning started in its rank 0's run dir
        return
    sharing = any(a.lstrip("+").lower() == "skip_completed=true" for a in argv)
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "resume") or (key == "hydra.sweep.dir" and not sharing):
            busy = dir_busy(Path(value))
            if busy:
                raise BusyError(busy)
