"""Where a run's numbers come from: the code (mnistlab's version; the git commit, a dirty flag and the uncommitted
diff when it runs from a checkout), the packages, the machine, the command line and the data.

Written into the run dir when the run starts, so a failed or interrupted run has it too:
``provenance.json``, ``packages.txt`` (every installed distribution, ``name==version``) and, for a checkout with
changes, ``uncommitted.patch`` (``git apply`` on the recorded commit reproduces the code that ran).
Collected with the standard library and ``git``; nothing here fails a run (a part that cannot be read is left
out, with the reason).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "provenance.json"
PACKAGES_FILE = "packages.txt"
PATCH_FILE = "uncommitted.patch"
MAX_UNTRACKED_BYTES = 1_000_000  # an untracked file larger than this is named in the patch, not copied into it
GIT_TIMEOUT_S = 10


def _git(root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str | None:
    """``git -C root …``'s output; None when git is missing, times out or exits with a code not in ``ok``."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode in ok else None


def code_checkout(package_dir: Path | None = None) -> Path | None:
    """The git checkout whose tracked files are the mnistlab that runs; None for an installed wheel (even one
    installed into a virtualenv that sits inside some other checkout)."""
    package_dir = package_dir or Path(__file__).resolve().parents[1]
    top = _git(package_dir, "rev-parse", "--show-toplevel")
    if not top:
        return None
    root = Path(top.strip())
    tracked = _git(root, "ls-files", "--error-unmatch", str(package_dir / "__init__.py"))
    return root if tracked else None


def git_state(root: Path) -> dict[str, Any]:
    """Commit, branch, dirty flag; the patch text under ``patch`` (tracked changes against HEAD, then untracked
    files that git does not ignore, as new-file diffs)."""
    commit = (_git(root, "rev-parse", "HEAD") or "").strip() or None
    branch = (_git(root, "rev-parse", "--abbrev-ref", "HEAD") or "").strip() or None
    tracked = _git(root, "diff", "HEAD", "--binary") or ""
    untracked = [p for p in (_git(root, "ls-files", "--others", "--exclude-standard", "-z") or "").split("\0") if p]
    parts, skipped = [tracked], []
    for name in untracked:
        path = root / name
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_UNTRACKED_BYTES:
            skipped.append(name)
            continue
        # exit status 1 means "the files differ", which a new file always does
        diff = _git(root, "diff", "--no-index", "--binary", "--", "/dev/null", name, ok=(0, 1))
        if diff is None:
            skipped.append(name)
            continue
        parts.append(diff)
    patch = "".join(parts)
    state: dict[str, Any] = {"commit": commit, "branch": branch, "dirty": bool(patch), "patch": patch}
    if skipped:
        state["untracked_not_in_patch"] = skipped
    return state


@functools.cache
def packages() -> tuple[str, ...]:
    """``name==version`` of every installed distribution, sorted by name; read once per process (a sweep's jobs
    share it: ~0.1 s each otherwise)."""
    from importlib import metadata

    found = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")  # type: ignore[attr-defined]  # an email.Message at runtime; the Protocol omits get
        if name:
            found[name.lower()] = f"{name}=={dist.version}"
    return tuple(found[k] for k in sorted(found))


def _version(module: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(module)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, Any]:
    """Host, OS, Python, the versions that decide the numbers (torch, Lightning, CUDA, cuDNN), device, threads."""
    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": _version("torch"),
        "lightning": _version("lightning"),
        "torchvision": _version("torchvision"),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    torch = sys.modules.get("torch")
    if torch is not None:  # imported by the run already; never imported just for this
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.version.cuda
        cuda = torch.cuda.is_available()
        info["cudnn"] = torch.backends.cudnn.version() if cuda else None
        info["device"] = torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine()
    # the job (its array task), the node this process ran on and how many times SLURM had requeued it
    keys = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_NODELIST", "SLURMD_NODENAME")
    slurm = {k: os.environ[k] for k in (*keys, "SLURM_RESTART_COUNT") if k in os.environ}
    if slurm:
        info["slurm"] = slurm
    return info


def fingerprint(arrays: Iterable[Any]) -> str:
    """A short content hash of arrays or tensors (their shapes, dtypes and bytes): the same data gives the same
    fingerprint on any machine, whatever file format or path it was read from."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        data = array.numpy() if hasattr(array, "numpy") else array
        digest.update(f"{tuple(data.shape)}{data.dtype}".encode())
        digest.update(memoryview(data.reshape(-1)).cast("B") if data.flags.c_contiguous else data.tobytes())
    return digest.hexdigest()


def _cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mnistlab" / "fingerprints.json"


def cached_fingerprint(key: str, compute: Any, keep: int = 200) -> str:
    """``compute()`` once per ``key`` (which names the files read, with their sizes and times), remembered in
    the user's cache folder across processes; without a writable cache it is simply computed."""
    from mnistlab.core.files import write_json_atomic

    path = _cache_file()
    try:
        known = json.loads(path.read_text()) if path.stat().st_size < 1_000_000 else {}
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), str):
        return known[key]
    value = compute()
    known = {k: v for k, v in list(known.items())[-(keep - 1) :] if isinstance(v, str)}
    known[key] = value
    with contextlib.suppress(OSError):
        write_json_atomic(path, known)
    return value


def collect(argv: list[str] | None = None, data: dict[str, Any] | None = None) -> tuple[dict[str, Any], str, str]:
    """(provenance record, packages text, patch text); the patch is empty outside a checkout or without changes."""
    from mnistlab import __version__

    record: dict[str, Any] = {
        "mnistlab": __version__,
        "command": list(argv if argv is not None else sys.argv),
        "cwd": os.getcwd(),
        "machine": machine(),
    }
    patch = ""
    root = code_checkout()
    if root is not None:
        state = git_state(root)
        patch = state.pop("patch")
        record["git"] = state
    if data:
        record["data"] = data
    return record, "\n".join(packages()) + "\n", patch


def write(run_dir: Path, argv: list[str] | None = None, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the run's provenance files (atomically, never through a link); returns the record."""
    from mnistlab.core.files import write_json_atomic, write_text_atomic

    record, package_text, patch = collect(argv, data)
    run_dir = Path(run_dir)
    write_text_atomic(run_dir / PACKAGES_FILE, package_text)
    record["packages_file"] = PACKAGES_FILE
    if patch:
        write_text_atomic(run_dir / PATCH_FILE, patch)
        record["git"]["patch_file"] = PATCH_FILE
    write_json_atomic(run_dir / PROVENANCE_FILE, record)
    return record


def read(run_dir: Path) -> dict[str, Any] | None:
    """A run dir's provenance record (data: never executed), or None when it has none or it is unreadable."""
    from mnistlab.core.readers import RecordError, read_json

    try:
        data = read_json(Path(run_dir) / PROVENANCE_FILE, limit=1_000_000)
    except RecordError:
        return None
    return data if isinstance(data, dict) else None


def read_packages(run_dir: Path) -> dict[str, str]:
    """``packages.txt`` as name → version (lower-case names)."""
    try:
        lines = (Path(run_dir) / PACKAGES_FILE).read_text().splitlines()[:20_000]
    except OSError:
        return {}
    pairs = (line.partition("==") for line in lines)
    return {name.strip().lower(): version.strip() for name, sep, version in pairs if sep}
