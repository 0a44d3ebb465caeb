"""`python -m mnistlab.train --help` wall time (median of 5). Target: <= 3 s."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from common import REPO, check, row


def main() -> bool:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mnistlab.train", "--help"], cwd=REPO, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    row("python -m mnistlab.train --help, median of 5", statistics.median(times), "s")
    return check("--help <= 3 s", statistics.median(times) <= 3.0)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
