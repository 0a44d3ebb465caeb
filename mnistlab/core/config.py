"""Config plumbing of the commands: where the YAML lives, one-line errors for unknown presets, and
``resume=`` expanded into the run's own overrides (read as data: overrides that name code are not replayed).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from mnistlab.core.errors import exit_with, first_line

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(ROOT / "conf")
# what makes an override more than a value: Hydra's instantiation keys and interpolations
CODE_MARKERS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_", "${")

if not OmegaConf.has_resolver("mnistlab_root"):
    OmegaConf.register_new_resolver("mnistlab_root", lambda: str(ROOT))


def to_plain(cfg: Any) -> Any:
    """Resolved plain containers: what checkpoints and metrics.json may hold."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg


def check_group_choices(argv: list[str]) -> None:
    """``model=foo`` where conf/model/foo.yaml does not exist: one line listing the options, before Hydra
    (whose own message spans a screen)."""
    conf = Path(CONFIG_DIR)
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        if not sep or "." in group or "/" in group or not (conf / group).is_dir() or "," in value or not value:
            continue
        if value != "null" and not (conf / group / f"{value}.yaml").is_file():
            options = sorted(p.stem for p in (conf / group).glob("*.yaml") if not p.stem.startswith("_"))
            exit_with(f"{group}={value!r} is not a preset; choose one of {', '.join(options)}")


def saved_overrides(run_dir: Path) -> list[str]:
    """The overrides a run was started with, as plain strings; those that name code or interpolate are left
    out with a note (a run dir is data: whoever wrote it must not choose what runs)."""
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    try:
        saved = OmegaConf.to_container(OmegaConf.load(overrides_file))
    except Exception as err:
        exit_with(f"resume={run_dir}: {overrides_file} is not readable ({first_line(err)}); restore it from a copy")
    if not isinstance(saved, list) or not all(isinstance(o, str) for o in saved):
        exit_with(f"resume={run_dir}: {overrides_file} must be a list of overrides such as model=cnn")
    kept = []
    for override in saved:
        if any(marker in override for marker in CODE_MARKERS):
            print(
                f"note: resume does not replay {override!r} from {overrides_file} (run dirs hold values, not code); "
                "pass it again on the command line to keep it",
                file=sys.stderr,
            )
        else:
            kept.append(override)
    return kept


def expand_resume(argv: list[str]) -> list[str]:
    """``resume=<run dir>`` → the run's own overrides, then the new ones, in the same run dir, from its
    ``checkpoints/last.ckpt``. Hydra then composes the same config again (later overrides win) and writes
    the combined overrides back, so a run can be resumed any number of times."""
    resume = [a for a in argv if a.startswith("resume=")]
    if not resume:
        return argv
    run_dir = Path(resume[-1].partition("=")[2]).expanduser()
    last = run_dir / "checkpoints" / "last.ckpt"
    if not (run_dir / ".hydra" / "overrides.yaml").is_file():
        exit_with(f"resume={run_dir} is not a run dir (no .hydra/overrides.yaml)")
    if not last.is_file():
        exit_with(
            f"resume={run_dir} has no checkpoints/last.ckpt to resume from (the run ended before its first epoch)"
        )
    dropped = ("resume=", "ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir=", "hydra.job.", "++ckpt_path=")
    saved = [o for o in saved_overrides(run_dir) if not o.startswith(dropped)]
    new = [a for a in argv[1:] if not a.startswith("resume=")]
    return [argv[0], *saved, *new, f"ckpt_path={last.resolve()}", f"hydra.run.dir={run_dir.resolve()}"]
