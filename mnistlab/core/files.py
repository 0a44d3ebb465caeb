"""Run results on disk: files written atomically so that a kill never leaves half a file, and run dir locks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from mnistlab.core.errors import BusyError

LOCK_FILE = ".mnistlab.lock"
# when this process started (near enough: when mnistlab was imported): temporary files older than this that
# match mnistlab's own pattern were left by a writer that is gone
PROCESS_STARTED = time.time()


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


def to_json(data: Any, indent: int | None = 2, ensure_ascii: bool = True) -> str:
    """Valid JSON, always: non-finite numbers become null (``ensure_ascii=False``: text such as class names
    kept as written, not as ``\\u`` escapes)."""
    return json.dumps(finite(data), indent=indent, allow_nan=False, ensure_ascii=ensure_ascii)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda f: f.write((to_json(data) + "\n").encode()))


def is_rank_zero() -> bool:
    """Whether this process is the one Lightning will make global rank 0 (from the variables it reads): only
    rank 0 writes run files. Read here, without Lightning, so that a typo fails in half a second."""
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID"))


def _me(flocked: bool = False) -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), **({"flock": True} if flocked else {})}


def _mine(owner: dict[str, Any] | None) -> bool:
    return owner is not None and owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()


def _owner(lock: Path) -> dict[str, Any] | None:
    """The pid, host (and whether it was an OS lock) a lock file names; None when it names nobody readable."""
    try:
        owner = json.loads(lock.read_text())
        return {"pid": int(owner["pid"]), "host": str(owner["host"]), "flock": owner.get("flock") is True}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent, or not written by mnistlab (its lock files are written whole, see acquire_dir)


def _alive(owner: dict[str, Any]) -> bool:
    """Whether the process a pid-and-host lock names may still run (one of another host is taken to run)."""
    if owner["host"] != socket.gethostname():
        return True
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False  # stale: the process is gone
    except PermissionError:
        pass  # alive, another user's
    return True


def _holder(lock: Path) -> dict[str, Any] | None:
    """Who holds ``lock`` by the pid-and-host scheme, or None when nobody does (no file, a process of this host
    that is gone, or a lock the OS held: its holder's open file is what counts, see ``_os_locked``)."""
    owner = _owner(lock)
    if owner is None or owner["flock"] or not _alive(owner):
        return None
    return {"pid": owner["pid"], "host": owner["host"]}


# the directories this process holds by an OS lock: the open lock file of each (closing it releases the lock)
_HELD: dict[Path, int] = {}
_NO_OS_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)  # some network file systems


def _os_locked(lock: Path) -> bool | None:
    """Whether another open file holds the OS lock on ``lock``: None when there is no lock file or the file
    system has no such locks."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: two processes asking at once do not collide
    except BlockingIOError:
        return True
    except OSError as err:
        if err.errno in _NO_OS_LOCKS:
            return None
        raise
    finally:
        os.close(fd)  # releases the lock just taken, if it was
    return False


def _busy_line(directory: Path, owner: dict[str, Any] | None) -> str:
    lock = Path(directory) / LOCK_FILE
    if owner is None:
        return f"{directory} is being taken by another process; try again"
    return (
        f"{directory} is in use by process {owner['pid']} on {owner['host']}; wait for it, choose another dir, "
        f"or delete {lock} if that process no longer runs"
    )


def dir_busy(directory: Path) -> str | None:
    """One line saying who writes into ``directory``, or None when nobody else does."""
    directory = Path(directory)
    if directory.resolve() in _HELD:
        return None
    lock = directory / LOCK_FILE
    if _os_locked(lock):
        return _busy_line(directory, _owner(lock))
    owner = _holder(lock)  # a lock of the pid-and-host scheme (a file system without OS locks)
    if owner is None or _mine(owner):
        return None
    return _busy_line(directory, owner)


def acquire_dir(directory: Path) -> bool:
    """Hold ``directory`` for this process; a second writer gets :class:`BusyError` at once. False when this
    process held it already (nothing to release).

    The lock is the OS's (``flock`` on the open lock file, kept open while held): a killed process's lock goes
    with it. The file holds the owner's pid and host for the message. Where the file system has no such locks
    (ENOLCK, EOPNOTSUPP: some network file systems) the pid and host alone are the lock, as
    ``_acquire_by_pid`` says. Taking it also removes the temporary files a killed writer left (see
    ``remove_orphan_temps``)."""
    directory = Path(directory)
    key = directory.resolve()
    if key in _HELD:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / LOCK_FILE
    refuse_links(lock)
    for attempt in range(4):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666 & ~_UMASK)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if attempt < 2:  # perhaps only another process's look at it (dir_busy): ask again
                time.sleep(0.05)
                continue
            raise BusyError(_busy_line(directory, _owner(lock))) from None
        except OSError as err:
            os.close(fd)
            if err.errno in _NO_OS_LOCKS:
                return _acquire_by_pid(directory)
            raise
        try:
            if os.fstat(fd).st_ino != os.stat(lock, follow_symlinks=False).st_ino:
                os.close(fd)  # released and removed by its holder after this open: lock the new file
                continue
        except FileNotFoundError:
            os.close(fd)
            continue
        legacy = _holder(lock)  # a pid-and-host lock of a live process (an earlier mnistlab, or no OS locks)
        if legacy is not None and not _mine(legacy):
            os.close(fd)
            raise BusyError(_busy_line(directory, legacy))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me(flocked=True)).encode(), 0)
        _HELD[key] = fd
        remove_orphan_temps(directory)
        return True
    raise BusyError(_busy_line(directory, None))


def _acquire_by_pid(directory: Path) -> bool:
    """The lock where the OS has none: a file naming this process, written under a temporary name and linked
    into place (never half-written); a lock whose process died (on this host) is taken over."""
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
            remove_orphan_temps(directory)
            return True
        except FileExistsError:
            continue  # another process took it between the check and the link: check again
        finally:
            Path(tmp).unlink(missing_ok=True)
    raise BusyError(dir_busy(directory) or _busy_line(directory, None))


def release_dir(directory: Path) -> None:
    lock = Path(directory) / LOCK_FILE
    fd = _HELD.pop(Path(directory).resolve(), None)
    if fd is not None:
        lock.unlink(missing_ok=True)  # while still held: whoever opened the old file sees it replaced
        os.close(fd)
    elif _mine(_holder(lock)):
        lock.unlink(missing_ok=True)


# what ``atomic_write`` names its temporary files (``tempfile.mkstemp``: 8 random characters) and the pid-and-host
# lock's temporary file: nothing else is ever removed as an orphan
_ORPHAN = re.compile(r"^\.(?:.+\.[a-z0-9_]{8}\.tmp|mnistlab\.lock\.[a-z0-9_]{8})$")
ORPHAN_FOLDERS = (".", ".hydra", "checkpoints")  # where mnistlab writes in a run dir (job dirs are locked each)


def remove_orphan_temps(directory: Path) -> list[Path]:
    """The temporary files of mnistlab's own atomic writes that a killed writer left in ``directory`` (and its
    .hydra/ and checkpoints/), older than this process: removed. Called by whoever just locked the dir, so that
    no writer of it is running."""
    removed = []
    for folder in ORPHAN_FOLDERS:
        try:
            entries = list(os.scandir(Path(directory) / folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if (
                    _ORPHAN.match(entry.name)
                    and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_mtime < PROCESS_STARTED
                ):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:
                continue  # gone already, or not ours to remove
    return removed


@contextlib.contextmanager
def dir_lock(directory: Path) -> Iterator[None]:
    """``acquire_dir`` for the block."""
    taken = acquire_dir(directory)
    try:
        yield
    finally:
        if taken:
            release_dir(directory)
