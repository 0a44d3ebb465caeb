"""Config plumbing of the commands: where the YAML lives, one-line errors for unknown presets, and
``resume=`` expanded into the run's own overrides (read as data: overrides that name code are not replayed).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import re
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from omegaconf import OmegaConf

from mnistlab.core.compat import RECIPE_BEFORE, RENAMED_OVERRIDES
from mnistlab.core.errors import BusyError, ConfigError, first_line
from mnistlab.core.extras import require
from mnistlab.core.files import atomic_write, dir_busy, is_rank_zero
from mnistlab.core.omegaconf_compat import register_resolver
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
BEFORE_RESUME = "before-resume"  # their copy an earlier mnistlab kept while a resume had not started yet

# paths.root_dir: the directory the command runs from (data/, outputs/ and multirun/ go there, never into the
# installed package); mnistlab_root is its older name, still found in the .hydra/ of earlier run dirs.
for _name in ("mnistlab_cwd", "mnistlab_root"):
    register_resolver(_name, lambda: str(Path.cwd()))


def config_groups_help() -> str:
    """The config groups section of a command's ``--help`` (conf/hydra/help/mnistlab.yaml): the groups its own
    config chose from, each with its presets; "" for a command without groups."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return ""
    groups = sorted(g for g in HydraConfig.get().runtime.choices if g != "hydra" and not str(g).startswith("hydra/"))
    rows = [f"{group}: {', '.join(presets(group))}" for group in groups if presets(group)]
    return "== Config groups (pick one with group=option) ==\n" + "\n".join(rows) + "\n" if rows else ""


# this process's folder for the .hydra files of its jobs until each holds its run dir: a name nobody can guess
# (Hydra makes it when it saves a job's files; the job removes it again, see settle_run_config)
_STAGING = Path(tempfile.gettempdir()) / f"mnistlab-hydra-{os.getpid()}-{secrets.token_hex(8)}"


def remove_dead_staging() -> None:
    """Staging folders of this user's processes that were killed before their jobs settled (a few small YAML
    files each): removed when their process is gone."""
    for folder in _STAGING.parent.glob("mnistlab-hydra-*-*"):
        pid = folder.name.split("-")[2]
        try:
            if folder == _STAGING or folder.stat().st_uid != os.getuid() or not pid.isdigit():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def staging_dir(output_dir: str) -> str:
    """Where Hydra writes the .hydra files of the job whose run dir is ``output_dir`` (conf/train.yaml's
    ``hydra.output_subdir``), until the job holds its dir."""
    return str(_STAGING / hashlib.sha256(str(output_dir).encode()).hexdigest()[:16])


register_resolver("mnistlab_staging", staging_dir)


def hydra_quoted(value: str) -> str:
    """``value`` as a quoted value of Hydra's override grammar: a path with ``,`` ``=`` quotes, brackets,
    spaces or any other character reads back as itself."""
    value = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, value)  # backslashes before a quote or the end
    return "'" + value.replace("'", "\\'").replace("${", "\\${") + "'"


def path_value(value: str) -> Path:
    """The path of ``resume=``/``rerun=``/``hydra.run.dir=`` as given: raw, or quoted as Hydra's grammar quotes
    (``hydra_quoted``; what a DDP rank's command line holds)."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            parsed = OverridesParser.create().parse_override(f"path={value}").value()
        except Exception:  # not Hydra's quoting after all: the name itself has the quotes
            parsed = None
        if isinstance(parsed, str):
            return Path(parsed).expanduser()
    return Path(value).expanduser()


register_resolver("mnistlab_config_groups", config_groups_help)


def build(section: Any, **kwargs: Any) -> Any:
    """Hydra's ``instantiate``, the one place mnistlab calls it: for the config composed from the command line
    and conf/ only (trainer, loggers, callbacks), never for anything read back from a file."""
    from hydra.utils import instantiate

    from mnistlab.core.hydra_compat import instantiate_options

    return instantiate(section, **instantiate_options(), **kwargs)


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
    "logger": {"mlflow": ("mlflow", "sqlalchemy", "alembic"), "wandb": ("wandb",), "trackio": ("trackio",)},
    "data": {"tiny_imagenet": ("datasets",), "hf": ("datasets",)},
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
            if choice in value.strip("[]").split(","):  # a sweep (a,b) or Hydra's list of options ([a,b])
                require(f"{group}={choice}", *modules)
        if "." in group or "/" in group or not (conf / group).is_dir() or "," in value or not value:
            continue
        if value != "null" and not (conf / group / f"{value}.yaml").is_file():
            raise ConfigError(not_a_preset(group, value))


def read_overrides(run_dir: Path) -> list[str]:
    """A run's ``.hydra/overrides.yaml`` as plain strings, never resolved (ConfigError when it is not a list
    of strings)."""
    overrides_file = run_config_dir(run_dir) / "overrides.yaml"
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
        config = read_yaml(run_config_dir(run_dir) / "config.yaml")
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
    then composes the same config again (later overrides win); the new .hydra files replace the run's once the
    resume holds the dir and has started (``settle_run_config``), so a run can be resumed any number of times.
    A run stopped before its first epoch ended (no last.ckpt, no completed record) starts again from scratch
    with the same config."""
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    run_dir = path_value(resume[-1].partition("=")[2])
    last = run_dir / "checkpoints" / "last.ckpt"
    check_input_dir("resume", run_dir)
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        raise ConfigError(f"resume={run_dir} is not a run dir (no .hydra/overrides.yaml)")
    check_earlier_config(run_dir)
    from_scratch = not last.is_file()
    if from_scratch:
        from mnistlab.core.record import is_completed, read_record

        if is_completed(read_record(run_dir)):
            raise ConfigError(f"resume={run_dir} has no checkpoints/last.ckpt to resume from (the run completed)")
        if is_rank_zero():
            print(
                f"note: {run_dir} stopped before its first epoch ended (no checkpoints/last.ckpt): training starts "
                "again from the first epoch with the run's config",
                file=sys.stderr,
            )
    dropped = ("resume=", "ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir=", "hydra.job.", "++ckpt_path=")
    saved = [*recipe_pins(run_dir), *(o for o in saved_overrides(run_dir) if not o.startswith(dropped))]
    new = [a for a in argv[1:] if not a.startswith("resume=")]
    run = run_dir.resolve()
    where = [f"resume={hydra_quoted(str(run))}", f"hydra.run.dir={hydra_quoted(str(run))}"]
    if not from_scratch:
        where.insert(1, f"ckpt_path={hydra_quoted(str(last.resolve()))}")
    return [argv[0], *saved, *new, *where]


def check_input_dir(key: str, path: Path) -> None:
    """``key=<path>`` names a folder: a file, a device or a FIFO is refused before anything opens it."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={path} is not a folder (a file, device or FIFO); give the run dir")


RERUN_DROPPED = ("resume=", "rerun=", "ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir=", "hydra.job.", "++ckpt_path=")


def expand_rerun(argv: list[str]) -> list[str]:
    """``rerun=<run dir>`` → the run's replayable overrides, then the new ones, then ``rerun=<resolved dir>``
    (the pipeline compares provenance against it); a new run dir, as for any run."""
    given = [a for a in argv[1:] if a.startswith("rerun=")]
    if not given:
        return argv
    if any(a.startswith("resume=") for a in argv[1:]):
        raise ConfigError("give resume=<run dir> (continue it in place) or rerun=<run dir> (train it again), not both")
    run_dir = path_value(given[-1].partition("=")[2])
    check_input_dir("rerun", run_dir)
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        raise ConfigError(f"rerun={run_dir} is not a run dir (no .hydra/overrides.yaml)")
    check_earlier_config(run_dir)
    saved = [*recipe_pins(run_dir), *(o for o in saved_overrides(run_dir) if not o.startswith(RERUN_DROPPED))]
    new = [a for a in argv[1:] if not a.startswith("rerun=")]
    return [argv[0], *saved, *new, f"rerun={hydra_quoted(str(run_dir.resolve()))}"]


def run_config_dir(run_dir: Path) -> Path:
    """Where a run's own .hydra files are: ``.hydra/``, or its ``before-resume/`` copy, which an earlier
    mnistlab left while a resume had not started (the files beside it are that resume's, not the run's)."""
    hydra_dir = Path(run_dir) / ".hydra"
    return hydra_dir / BEFORE_RESUME if (hydra_dir / BEFORE_RESUME).is_dir() else hydra_dir


def check_earlier_config(run_dir: Path) -> None:
    """A ``before-resume/`` copy (see ``run_config_dir``) that is empty or unreadable is never used: one line."""
    keep = Path(run_dir) / ".hydra" / BEFORE_RESUME
    if not keep.is_dir():
        return
    for name in RUN_CONFIG_FILES:
        path = keep / name
        if name != "overrides.yaml" and not path.exists():
            continue
        try:
            data = read_yaml(path)
            why = "it is empty" if data is None else ""
            if name == "overrides.yaml" and not (isinstance(data, list) and all(isinstance(o, str) for o in data)):
                why = why or "not a list of overrides"
        except Exception as err:
            why = first_line(err)
        if why:
            raise ConfigError(
                f"{path} is not a usable copy of the run's .hydra files ({why}); delete {keep} to resume from the "
                "run's current .hydra files"
            )


def settle_run_config(run_dir: Path, started: bool) -> None:
    """The .hydra files Hydra wrote aside for this job (conf/train.yaml's ``hydra.output_subdir``) go into the
    run dir once the job holds it and has started (a new run: as soon as it holds it); a job that is refused,
    skipped or fails before it starts leaves the run's files as they were. Rank 0 only."""
    from hydra.core.hydra_config import HydraConfig

    if not is_rank_zero() or not HydraConfig.initialized():
        return
    hydra = HydraConfig.get()
    if hydra.output_subdir is None:
        return
    hydra_dir = Path(run_dir) / ".hydra"
    staged = Path(hydra.runtime.output_dir) / str(hydra.output_subdir)
    if staged.parent != _STAGING or not staged.is_dir():  # hydra.output_subdir given: Hydra wrote there itself
        return
    if started:
        for name in RUN_CONFIG_FILES:  # overrides.yaml, what a resume replays, last
            if (staged / name).is_file():
                data = (staged / name).read_bytes()

                def write(f: IO[bytes], data: bytes = data) -> None:
                    f.write(data)

                atomic_write(hydra_dir / name, write)
        shutil.rmtree(hydra_dir / BEFORE_RESUME, ignore_errors=True)  # an earlier mnistlab's copy: now replaced
    shutil.rmtree(staged, ignore_errors=True)
    with contextlib.suppress(OSError):
        staged.parent.rmdir()  # this process's staging folder, once no job of it has files there
    remove_dead_staging()


def refuse_busy_dirs(argv: list[str]) -> None:
    """Before Hydra writes anything into a run dir (hydra.run.dir or resume) or a sweep dir: one line when
    another process is writing there (a sweep with skip_completed=true shares its dir by design)."""
    if not is_rank_zero():  # a DDP rank that Lightning started in its rank 0's run dir
        return
    sharing = any(a.lstrip("+").lower() == "skip_completed=true" for a in argv)
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("hydra.run.dir", "resume") or (key == "hydra.sweep.dir" and not sharing):
            busy = dir_busy(path_value(value))
            if busy:
                raise BusyError(busy)
