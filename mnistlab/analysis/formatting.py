"""How the reports write numbers and tables: one formatter, so that the same value reads the same in the run
report and the sweep report, and one Markdown table writer, so that record text with a ``|`` or a line break
(a failure reason) cannot break a table."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "—"


def format_number(value: Any, decimals: int | None = None, *, signed: bool = False) -> str:
    """A report's text for ``value``. Floats: four significant digits below 10 (0.9701, 0.003437, 1.090e-05:
    never 0.0000 for a value that is not zero), one decimal from 10 on; with ``decimals``, that many fixed
    decimals (0.9700, for columns of accuracies that line up); ``signed`` writes a + before positive values.
    None is ``—``; anything else (ints, text) is written as it is."""
    if value is None:
        return MISSING
    if not isinstance(value, float):
        return str(value)
    sign = "+" if signed else ""
    if decimals is not None:
        return f"{value:{sign}.{decimals}f}"
    if value != value:
        return "nan"
    if value == 0:
        return "0"
    if abs(value) >= 10:
        return f"{value:{sign}.1f}"
    return f"{value:{sign}#.4g}".rstrip(".")


def escape_cell(text: Any) -> str:
    """A table cell's text: a ``|`` escaped, line breaks as ``<br>`` and HTML's ``&`` ``<`` as entities, so that
    the cell stays one cell and text from a record (a failure's reason) cannot open a comment or a tag that
    hides or rewrites the rest of the report."""
    text = text if isinstance(text, str) else format_number(text)
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return text.replace("|", "\\|").replace("\r\n", "<br>").replace("\r", "<br>").replace("\n", "<br>")


def markdown_table(headers: Sequence[Any], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines: the header, the separator, then one line per row. A cell that is not text is
    written by ``format_number``."""

    def line(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(escape_cell(cell) for cell in cells) + " |"

    return [line(headers), "|" + "---|" * len(headers), *(line(row) for row in rows)]
