"""The reports' one number formatter and one Markdown table writer."""

from __future__ import annotations

import pytest

from mnistlab.analysis.formatting import format_number, markdown_table


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.97012, "0.9701"),
        (1.09e-5, "1.090e-05"),  # never 0.0000 for a value that is not zero
        (0.0034369211930110493, "0.003437"),
        (0.9, "0.9000"),
        (1391.14, "1391.1"),
        (-12.345, "-12.3"),
        (0.0, "0"),
        (float("nan"), "nan"),
        (None, "—"),
        (3, "3"),
        ("adam", "adam"),
        (True, "True"),
    ],
)
def test_numbers_keep_significant_digits(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("value", "decimals", "signed", "text"),
    [
        (0.97, 4, False, "0.9700"),
        (0.0, 4, False, "0.0000"),
        (0.0283, 4, True, "+0.0283"),
        (-0.0267, 4, True, "-0.0267"),
        (12.345, 1, False, "12.3"),
        (512.4, 0, False, "512"),
        (0.0034, None, True, "+0.003400"),
        (7, 4, False, "7"),  # an int is a count: no decimals
        (None, 4, False, "—"),
    ],
)
def test_fixed_decimals_and_signs(value, decimals, signed, text):
    assert format_number(value, decimals, signed=signed) == text


def test_a_markdown_table_has_a_header_a_separator_and_one_line_per_row():
    lines = markdown_table(["job", "acc", "epochs"], [["0", 0.97012, 3], ["1", None, 4]])
    assert lines == ["| job | acc | epochs |", "|---|---|---|", "| 0 | 0.9701 | 3 |", "| 1 | — | 4 |"]


def test_a_cell_with_a_pipe_or_a_line_break_stays_one_cell():
    reason = "ValueError: a|b\nTraceback line\r\nlast"
    (_, _, row) = markdown_table(["job", "reason"], [["7", reason]])
    assert row == "| 7 | ValueError: a\\|b<br>Traceback line<br>last |"
    assert row.replace("\\|", "").count("|") == 3 and "\n" not in row


def test_html_in_a_cell_is_text_so_it_cannot_hide_the_rest_of_the_report():
    reason = "<!-- hides what follows --> <img src=x onerror=alert(1)> AT&T"
    (_, _, row) = markdown_table(["job", "reason"], [["7", reason]])
    assert row == "| 7 | &lt;!-- hides what follows --> &lt;img src=x onerror=alert(1)> AT&amp;T |"
