"""Run results on disk: files written atomically so that a kill never leaves half a file, and run dir locks."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from mnistlab.core.errors import BusyError

LOCK_FILE = ".mnistlab.lock"


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def atomic_write(path: Path, write: Callable[[IO[bytes]], object], check: Callable[[Path], None] | None = None) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync, ``check`` it (which may raise), then rename
    over ``path``: readers and a kill at any moment see the old file or the new one, never half of one, and
    a file that fails its check never replaces a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    refuse_links(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the result gets the usual permissions
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refuse_links(path: Path) -> None:
    """A file mnistlab writes is never a symbolic link, nor in a folder that is one: a link planted in a run or
    sweep dir (``report.md`` → ``~/.ssh/authorized_keys``) must not turn a report into a write elsewhere."""
    path = Path(path)
    for place in (path, path.parent):
        if place.is_symlink():
            raise OSError(f"{place} is a symbolic link; mnistlab does not write through links (remove it)")


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` (UTF-8) into ``path`` as ``atomic_write`` does: whole or not at all, never through a link."""
    atomic_write(Path(path), lambda f: f.write(text.encode()))


def write_csv_atomic(path: Path, header: list[str], rows: Any) -> None:
    """A CSV file (header, then rows), written as ``atomic_write`` does."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def to_json(data: Any, indent: int | None = 2) -> str:
    """Valid JSON, always: non-finite numbers become null."""
    return json.dumps(finite(data), indent=indent, allow_nan=False)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write((to_json(data) + "\n").encode()))


def is_rank_zero() -> bool:
    """Whether this process is the one Lightning will make global rank 0 (from the variables it reads): only
    rank 0 writes run files. Read here, without Lightning, so that a typo fails in half a second."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID"))


def _me() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def _mine(owner: dict[str, Any] | None) -> bool:
    return owner is not None and owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()


def _holder(lock: Path) -> dict[str, Any] | None:
    """Who holds ``lock``, or None when nobody does (no file, or a process of this host that is gone)."""
    try:
        owner = json.loads(lock.read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not written by mnistlab (its lock files are created whole, see acquire_dir)
    if host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # stale: the process is gone
        except PermissionError:
            pass  # alive, another user's
    return {"pid": pid, "host": host}


def dir_busy(directory: Path) -> str | None:
    """One line saying who writes into ``directory``, or None when nobody else does."""
    lock = Path(directory) / LOCK_FILE
    owner = _holder(lock)
    if owner is None or _mine(owner):
        return None
    return (
        f"{directory} is in use by process {owner['pid']} on {owner['host']}; wait for it, choose another dir, "
        f"or delete {lock} if that process no longer runs"
    )


def acquire_dir(directory: Path) -> bool:
    """Hold ``directory`` for this process; a second writer gets :class:`BusyError` at once, and a lock whose
    process died (on this host) is taken over. False when this process held it already (nothing to release).

    The lock file is written under a temporary name and linked into place, so it never exists half-written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / LOCK_FILE
    for _ in range(3):
        busy = dir_busy(directory)
        if busy:
            raise BusyError(busy)
        if _mine(_holder(lock)):
            return False
        stale = lock.read_bytes() if lock.exists() else None
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".mnistlab.lock.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(_me()))
            if stale is not None and lock.exists() and lock.read_bytes() == stale:
                lock.unlink(missing_ok=True)  # the stale lock we saw, and no newer one
            os.link(tmp, lock)
            return True
        except FileExistsError:
            continue  # another process took it between the check and the link: check again
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise BusyError(dir_busy(directory) or f"{directory} is being taken by another process; try again")


def release_dir(directory: Path) -> None:
    lock = Path(directory) / LOCK_FILE
    if _mine(_holder(lock)):
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def dir_lock(directory: Path) -> Iterator[None]:
    """``acquire_dir`` for the block."""
    taken = acquire_dir(directory)
    try:
        yield
    finally:
        if taken:
            release_dir(directory)
