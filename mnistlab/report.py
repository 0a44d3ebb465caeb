"""``python -m mnistlab.report <multirun dir>``: (re)write a sweep's report (report.md, runs.csv, plots) into
the sweep dir and print its path."""

from __future__ import annotations

import sys

from mnistlab.core.errors import run_command


def report(argv: list[str]) -> int:
    from mnistlab.analysis.sweep_report import check_sweep_dir, write_report

    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python -m mnistlab.report <multirun dir>", file=sys.stderr)
        return 2
    print(write_report(check_sweep_dir(argv[0])))
    return 0


def main(argv: list[str]) -> int:
    return run_command(lambda: report(argv))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
