"""``python -m mnistlab.report <multirun dir>``: (re)write a sweep's report (report.md, runs.csv, plots) into
the sweep dir and print its path."""

from __future__ import annotations

import sys

from mnistlab.core.errors import run_command
from mnistlab.core.process import end_process


def report(argv: list[str]) -> int:
    from mnistlab.analysis.sweep_report import check_sweep_dir, write_report

    usage = "usage: mnistlab-report <multirun dir>  (or python -m mnistlab.report)"
    if argv in (["-h"], ["--help"]):
        print(f"{usage}\n\n(Re)write a sweep's report.md, runs.csv and plots in its dir and print the report's path.")
        return 0
    if len(argv) != 1:
        print(usage, file=sys.stderr)
        return 2
    print(write_report(check_sweep_dir(argv[0])))
    return 0


def main(argv: list[str]) -> int:
    return run_command(lambda: report(argv))


def cli() -> None:
    """The ``mnistlab-report`` command."""
    end_process(lambda: sys.exit(main(sys.argv[1:])))


if __name__ == "__main__":
    cli()
