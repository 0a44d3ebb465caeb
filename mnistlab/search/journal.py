"""``hydra.sweeper.storage=journal:…``: a study shared by several processes or machines in one file (Optuna's
JournalStorage on a JournalFileBackend) instead of a database server.

- ``journal:///abs/path/study.log`` names the file; ``journal:study.log`` (no leading slash) is a file inside
  the sweep dir.
- Locking: ``JournalFileOpenLock`` (``open(O_CREAT | O_EXCL)`` of ``<file>.lock``), not Optuna's default
  symlink lock. O_EXCL creation is atomic on local disks, NFSv3 and v4, Lustre, GPFS, CephFS and SMB; the symlink
  lock is only needed on NFSv2, and symlinks are refused by SMB/CIFS mounts and Windows without a privilege.
  From Optuna 4.3 a lock left behind by a worker killed while it wrote is broken after 30 s; before, it would
  block every worker for good, so the journal asks for Optuna ≥ 4.3.
- Heartbeats: JournalStorage has none (it is no ``optuna.storages.BaseHeartbeat``, so Optuna's
  ``fail_stale_trials`` does nothing for it). The sweeper's heartbeat is written here as a system attribute of
  the trial, the writer's ``time.time()``; a RUNNING trial whose last beat is older than 2 × the interval by the
  reader's clock is failed. Unlike a database server, which stamps heartbeats with its own clock, this needs the
  machines' clocks in step (NTP): one ahead by more than the interval would fail trials that are alive.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import TrialState

from mnistlab.core.errors import ConfigError, MnistlabError

SCHEME = "journal:"
HEARTBEAT_ATTR = "mnistlab:heartbeat"  # a trial's system attribute: time.time() of its worker's last heartbeat
_OP_CODES = range(0, 16)  # Optuna's JournalOperation codes (0–10 today), with room for a few more


def is_journal(storage: str | None) -> bool:
    return bool(storage) and str(storage).startswith(SCHEME)


def journal_path(storage: str, sweep_dir: Path) -> Path:
    """The journal file a ``journal:`` setting names: ``journal:///abs/file`` or ``journal:/abs/file``
    (absolute), ``journal:file`` (in the sweep dir)."""
    rest = storage.removeprefix(SCHEME)
    if rest.startswith("//"):
        if not rest.startswith("///"):  # journal://host/…: there is no host to a file
            raise ConfigError(
                f"hydra.sweeper.storage={storage!r}: a journal is a file, journal:///absolute/path/study.log or "
                "journal:study.log (in the sweep dir)"
            )
        rest = rest[2:]
    if not rest.strip() or rest.endswith("/"):
        raise ConfigError(
            f"hydra.sweeper.storage={storage!r} names no file: journal:///absolute/path/study.log or "
            "journal:study.log (in the sweep dir)"
        )
    path = Path(rest)
    return path if path.is_absolute() else Path(sweep_dir).resolve() / path


def check_journal(path: Path) -> None:
    """Refuse, in one line, a journal this search could not use or would damage: a directory, a file it cannot
    read and append to, or one that is not an Optuna journal. Optuna itself ignores a last line that does not
    parse (it takes it for a write in progress), so a file of other text would be appended to as if empty."""
    if path.is_dir():
        raise MnistlabError(
            f"hydra.sweeper.storage: {path} is a directory, not a journal file: name a file in it, such as "
            f"journal://{path / 'study.log'}"
        )
    if not path.parent.is_dir():
        raise MnistlabError(
            f"hydra.sweeper.storage: {path.parent} (the journal's directory) does not exist: create it on a file "
            "system every worker reaches, or name another"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):  # the lock file is made beside the journal
        raise MnistlabError(
            f"hydra.sweeper.storage: cannot write in {path.parent} (the journal and its lock file live there): "
            "give this user write access to it, or name a journal elsewhere"
        )
    if not path.exists():
        return
    try:
        data = path.read_bytes()
        writable = os.access(path, os.W_OK)
    except OSError as err:
        data, writable = b"", False
        reason = err.strerror or str(err)
    else:
        reason = "no permission to append to it"
    if not writable:
        raise MnistlabError(
            f"hydra.sweeper.storage: {path} cannot be read and appended to ({reason}): give this user read and "
            "write access to it, or name another journal"
        )
    *lines, tail = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        problem = _record_problem(line)
        if problem:
            raise MnistlabError(not_a_journal(path, f"line {number}: {problem}"))
    if tail and not tail.startswith(b"{"):  # a line being written starts as a record does
        raise MnistlabError(not_a_journal(path, f"line {len(lines) + 1}: not a JSON record"))


def _record_problem(line: bytes) -> str | None:
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return "not a JSON record"
    if not isinstance(record, dict) or type(record.get("op_code")) is not int or record["op_code"] not in _OP_CODES:
        return "a JSON record without Optuna's op_code"
    return None


def not_a_journal(path: Path, why: str) -> str:
    """The one line for a file that is no journal this search can read (``why``: what is wrong with it)."""
    return (
        f"{path} is not a readable Optuna journal ({why}): move it away to start the search anew there, or give "
        "this search another hydra.sweeper.storage=journal:…"
    )


class JournalStudyStorage(JournalStorage):
    """Optuna's JournalStorage on a file, with the heartbeats that JournalStorage lacks (see the module)."""

    def __init__(self, path: Path, heartbeat_interval: int | None = None) -> None:
        if "grace_period" not in inspect.signature(JournalFileOpenLock).parameters:
            raise MnistlabError(
                f"hydra.sweeper.storage=journal:… needs Optuna ≥ 4.3 (installed: {optuna.__version__}; before 4.3 a "
                "worker killed while writing leaves a lock that blocks every other for good): pip install -U optuna"
            )
        lock = JournalFileOpenLock(str(path))
        super().__init__(JournalFileBackend(str(path), lock_obj=lock))
        self.path = path
        self.heartbeat_interval = heartbeat_interval

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def stale_trial_ids(self, study_id: int) -> list[int]:
        """RUNNING trials whose last heartbeat is older than 2 × the interval (by this machine's clock)."""
        if not self.heartbeat_interval:
            return []
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if isinstance(beat, int | float) and now - beat > 2 * self.heartbeat_interval:
                stale.append(trial._trial_id)
        return stale

    def fail_stale_trials(self, study_id: int) -> list[int]:
        """Fail the stale trials; those this process failed (another worker may have failed one first)."""
        failed = []
        for trial_id in self.stale_trial_ids(study_id):
            try:
                self.set_trial_state_values(trial_id, TrialState.FAIL)
                failed.append(trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
        return failed


def open_journal(storage: str, sweep_dir: Path, heartbeat_interval: int | None = None) -> Any:
    """The study storage of a ``journal:`` setting, checked first (one line for a file it cannot use)."""
    path = journal_path(storage, sweep_dir)
    check_journal(path)
    return JournalStudyStorage(path, heartbeat_interval)
