"""A PostgreSQL server of its own for a test: a temporary data dir, 127.0.0.1 on a free port, stopped afterwards."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.cli import free_port


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@contextlib.contextmanager
def postgres_server(password: str | None = None) -> Iterator[str]:
    """Yields the URL of database ``search`` (``postgresql+psycopg://user[:password]@127.0.0.1:port/search``).
    With ``password`` the server asks for it (scram-sha-256); without, it trusts the loopback. As root, it runs
    as the ``postgres`` user (PostgreSQL refuses root). Skips the test without the server or the driver."""
    pytest.importorskip("psycopg", reason="the [postgres] extra is not installed")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql; .ci/run does)")
    data = Path(tempfile.mkdtemp(prefix="mnistlab-pg-"))  # under /tmp: the server's user must reach it
    user = getpass.getuser()
    prefix: list[str] = []
    if os.geteuid() == 0:
        user = "postgres"
        shutil.chown(data, user)
        prefix = ["runuser", "-u", user, "--"]
    port = free_port()
    run = lambda *cmd: subprocess.run([*prefix, *cmd], check=True, capture_output=True, timeout=120)  # noqa: E731
    auth = ["--auth=trust"]
    if password is not None:
        pwfile = data / "pw"
        pwfile.write_text(password + "\n")
        if prefix:
            shutil.chown(pwfile, user)
        auth = ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
    run(str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", user, *auth, "-E", "UTF8")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    run(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-o", options, "-l", str(data / "log"), "-w", "start")
    login = user if password is None else f"{user}:{password}"
    try:
        given = [] if password is None else [f"PGPASSWORD={password}"]
        run("env", *given, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "search")
        yield f"postgresql+psycopg://{login}@127.0.0.1:{port}/search"  # psycopg 3 whatever SQLAlchemy's default
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)
