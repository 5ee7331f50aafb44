"""Exporting a list: its valid rows as UTF-8 CSV, safe to open in a spreadsheet.

The export is what a list looks like after reading: problem rows left out (and counted),
addresses normalized, the columns as they are. A cell a spreadsheet would run as a
formula gets a leading ``'`` (OWASP "CSV injection"), unless the caller asks for the
raw values. Writing to a file goes through :func:`~digest_mail.audience.editing.write_atomic`.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from digest_mail.audience.csvfiles import open_list, scan_source
from digest_mail.audience.editing import write_atomic
from digest_mail.audience.rows import ListCounts, RowProblem

__all__ = ["export_list", "export_list_file", "neutralize_cell"]


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(…),
# =cmd|…): a name typed into a signup form must not become one (OWASP "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize_cell(value: str) -> str:
    """``value`` prefixed with ``'`` when a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def export_list(
    path: Path, out: TextIO, *, raw: bool = False, encoding: str | None = None
) -> ListCounts:
    """Write the valid rows of a list as UTF-8 CSV (same columns, normalized addresses).

    Cells a spreadsheet would run as formulas get a leading ``'`` unless ``raw``.
    """
    counts = ListCounts()
    with open_list(path, encoding) as source:
        writer = csv.writer(out, lineterminator="\r\n")

        def write(row: Sequence[str]) -> None:
            writer.writerow(row if raw else [neutralize_cell(cell) for cell in row])

        write(source.raw_header)
        email_index = source.header.index("email")
        for _line, values, item in scan_source(source):
            if isinstance(item, RowProblem):
                counts.add_problem(item)
                continue
            counts.rows += 1
            if item.status == "subscribed":
                counts.subscribed += 1
            else:
                counts.unsubscribed += 1
            row = list(values[: len(source.header)])
            row += [""] * (len(source.header) - len(row))
            row[email_index] = item.email
            write(row)
    return counts


def export_list_file(
    path: Path, output: Path, *, raw: bool = False, encoding: str | None = None
) -> ListCounts:
    """:func:`export_list` into ``output``, written atomically and streamed."""
    counts: list[ListCounts] = []
    write_atomic(
        output, lambda out: counts.append(export_list(path, out, raw=raw, encoding=encoding))
    )
    return counts[0]
