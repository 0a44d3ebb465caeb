"""``mnistlab-report``: a sweep's report, every run under a folder as one table, and two runs side by side.

mnistlab-report SWEEP_DIR                 (re)write report.md, runs.csv and plots in the sweep dir
mnistlab-report table PATH [--csv FILE]   one row per run under PATH (any number of sweeps and runs)
mnistlab-report diff RUN_A RUN_B          config, provenance, packages and metrics that differ
"""

from __future__ import annotations

import sys
from pathlib import Path

from mnistlab.core.errors import run_command
from mnistlab.core.process import end_process

USAGE = "usage: mnistlab-report SWEEP_DIR | mnistlab-report table PATH [--csv FILE] | mnistlab-report diff RUN_A RUN_B"


def report(argv: list[str]) -> int:
    if argv in (["-h"], ["--help"]):
        print(f"{USAGE}\n\n{__doc__.split(chr(10), 2)[2]}")
        return 0
    if argv[:1] == ["table"] and len(argv) in (2, 4) and (len(argv) == 2 or argv[2] == "--csv"):
        return _table(argv[1], argv[3] if len(argv) == 4 else None)
    if argv[:1] == ["diff"] and len(argv) == 3:
        from mnistlab.analysis.run_table import diff, format_diff

        print(format_diff(diff(argv[1], argv[2])))
        return 0
    if len(argv) != 1 or argv[0] in ("table", "diff"):
        print(USAGE, file=sys.stderr)
        return 2
    from mnistlab.analysis.sweep.report import check_sweep_dir, write_report

    print(write_report(check_sweep_dir(argv[0])))
    return 0


def _table(path: str, csv_path: str | None) -> int:
    """The runs under ``path`` as CSV (into ``csv_path``, or ``-`` for standard output) or an aligned table."""
    import csv

    from mnistlab.analysis.run_table import runs

    rows = runs(path, frame=False)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if csv_path is None:
        shown = [c for c in columns if c not in ("sweep", "run_dir")][:12]
        print(f"{len(rows)} runs under {path}")
        for row in rows:
            print("  ".join(f"{c}={row.get(c)}" for c in shown if row.get(c) is not None))
        return 0
    table = [[row.get(c) for c in columns] for row in rows]
    if csv_path == "-":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows(table)
        return 0
    from mnistlab.core.files import write_csv_atomic

    write_csv_atomic(Path(csv_path), columns, table)
    print(csv_path)
    return 0


def main(argv: list[str]) -> int:
    return run_command(lambda: report(argv))


def cli() -> None:
    """The ``mnistlab-report`` command."""
    end_process(lambda: sys.exit(main(sys.argv[1:])))


if __name__ == "__main__":
    cli()
