"""The commands as a user runs them (a subprocess: exit status, stderr, signals, servers) and the one-line error
check they share."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from helpers import REPO

# overrides that keep a CLI run on tiny data to a few seconds
FAST = [
    "trainer.max_epochs=2",
    "data.val_size=100",
    "data.batch_size=32",
    "data.eval_batch_size=100",
    "callbacks.progress_bar=null",
    "trainer.enable_model_summary=false",
    "trainer.num_sanity_val_steps=0",
]


def run_cli(
    module: str,
    *args: str,
    data_dir: Path | None = None,
    cwd: Path | None = None,
    check: bool = True,
    timeout: int = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    if data_dir is not None:
        env["MNISTLAB_DATA_DIR"] = str(data_dir)
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{module} {' '.join(args)} exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def start_train(args: list[str], data_dir: Path) -> subprocess.Popen:
    """``python -m mnistlab.train ARGS`` started in the background (unbuffered, output piped), to be signalled."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MNISTLAB_DATA_DIR": str(data_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "mnistlab.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def assert_one_error_line(result: subprocess.CompletedProcess, expected: str) -> str:
    """The command's promise for a user error: exit status 2, one ``error: `` line holding ``expected``, no
    traceback. Returns that line."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    return errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(process: subprocess.Popen, port: int, timeout_s: float = 60) -> None:
    """Until a server ``process`` started answers on 127.0.0.1:``port``; RuntimeError when it ended first or
    did not answer within ``timeout_s``."""
    deadline = time.time() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"nothing answers on port {port}") from None
            time.sleep(0.1)


@contextlib.contextmanager
def serving(ckpt: Path, *args: str) -> Iterator[str]:
    """``python -m mnistlab.serve`` on a free loopback port for the block; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mnistlab.serve", f"ckpt_path={ckpt}", f"port={port}", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(process, port)
    except RuntimeError:
        process.kill()
        raise RuntimeError(f"the server did not start:\n{process.stdout.read().decode()[-3000:]}") from None
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=30)
