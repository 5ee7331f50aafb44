"""Reading a list file: open it, find its encoding, delimiter and header, scan its rows.

A list is read row by row (the csv module over a text stream), so memory does not grow
with the list: a million-row list scans in the same few megabytes as a thousand-row one,
apart from the duplicate detector (:mod:`digest_mail.audience.keyset`), which keeps 12
bytes per address instead of a Python string.

:func:`scan_list` yields every data row as a :class:`~digest_mail.audience.rows.Recipient`
or a :class:`~digest_mail.audience.rows.RowProblem`; what makes the whole file unreadable
(no such file, no ``email`` column, an undecodable byte, broken quoting) is an
:class:`InputError` naming the file and line.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import TextIO

from digest_mail.audience.addresses import AddressError, normalize_address
from digest_mail.audience.encodings import ENCODINGS, detect_encoding
from digest_mail.audience.keyset import SeenKeys, seen_keys
from digest_mail.audience.rows import (
    FIELD_CONTROL,
    KNOWN_COLUMNS,
    STATUSES,
    Recipient,
    RowProblem,
    name_problem,
)
from digest_mail.errors import InputError
from digest_mail.files import display_path
from digest_mail.ledger.scratch import SeenKeysOnDisk

__all__ = [
    "ListSource",
    "check_readable",
    "has_readers_rows",
    "open_list",
    "scan_list",
    "scan_source",
]


@dataclass
class ListSource:
    """An open list: encoding, dialect, header and a stream of (line, values)."""

    path: Path
    encoding: str
    delimiter: str
    raw_header: list[str]
    header: list[str]
    rows: Iterator[tuple[int, list[str]]]

    @cached_property  # asked once a row
    def columns(self) -> tuple[int, int, int, int]:
        """Where email, name, status and subscribed_at are in a row; for a column the
        header lacks, an index past the end of any row."""
        absent = sys.maxsize
        return (
            self.header.index("email"),
            self.header.index("name") if "name" in self.header else absent,
            self.header.index("status") if "status" in self.header else absent,
            self.header.index("subscribed_at") if "subscribed_at" in self.header else absent,
        )

    @cached_property  # asked once a row
    def extra(self) -> bool:
        """Whether the header has columns beyond the known ones (template attributes)."""
        return any(name and name not in KNOWN_COLUMNS for name in self.header)


def _detect_delimiter(header_line: str) -> str:
    counts = dict.fromkeys(",\t;", 0)
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


@contextmanager
def open_list(path: Path, encoding: str | None = None) -> Iterator[ListSource]:
    """Open a list; ``encoding`` (one of :data:`ENCODINGS`) as the user stated it, else
    detected (a UTF-8 BOM, UTF-16, UTF-8, cp932; refused when ambiguous)."""
    shown = display_path(path)
    if encoding is not None and encoding not in ENCODINGS:
        raise InputError(f"unknown encoding {encoding!r}", path=shown, hint="use utf-8 or cp932")
    try:
        # utf-8-sig: a stated UTF-8 may still start with a BOM.
        encoding = (
            detect_encoding(path)
            if encoding is None
            else {"utf-8": "utf-8-sig"}.get(encoding, encoding)
        )
        stream: TextIO = path.open(encoding=encoding, newline="")
    except FileNotFoundError:
        raise InputError(
            "no such file",
            path=shown,
            hint="a list name means subscribers/<name>.csv; "
            "'digest-mail subscribers add LIST ADDRESS' creates one",
        ) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a CSV file", path=shown) from None
    with stream:
        try:
            first = stream.readline()
        except UnicodeError as exc:
            raise InputError(f"cannot decode as {encoding}: {exc}", path=shown, line=1) from None
        if not first.strip():
            raise InputError(
                "empty file: expected a header row with an 'email' column", path=shown, line=1
            )
        delimiter = _detect_delimiter(first)
        reader = csv.reader(chain([first], stream), delimiter=delimiter)
        raw_header = next(reader)
        header = [name.strip().lower() for name in raw_header]
        if "email" not in header:
            found = ", ".join(repr(h) for h in header if h)
            raise InputError(
                f"no 'email' column (found: {found})",
                path=shown,
                line=1,
                hint="name the address column 'email' in the header row",
            )
        seen: set[str] = set()
        for name in header:
            if name and name in seen:
                raise InputError(f"column {name!r} appears twice in the header", path=shown, line=1)
            seen.add(name)

        def rows() -> Iterator[tuple[int, list[str]]]:
            previous = reader.line_num
            try:
                for values in reader:
                    start = previous + 1
                    previous = reader.line_num
                    if values and any(values):
                        yield start, values
            except csv.Error as exc:
                raise InputError(f"unreadable CSV: {exc}", path=shown, line=previous + 1) from None
            except UnicodeError as exc:
                raise InputError(
                    f"cannot decode as {encoding}: {exc}", path=shown, line=previous + 1
                ) from None

        yield ListSource(path, encoding, delimiter, raw_header, header, rows())


def _check_row(
    source: ListSource, line: int, values: Sequence[str]
) -> tuple[Recipient | None, RowProblem | None]:
    header, path = source.header, source.path
    if len(values) > len(header) and any(v.strip() for v in values[len(header) :]):
        return None, RowProblem(
            path,
            line,
            source.delimiter.join(values),
            f"has {len(values)} fields but the header has {len(header)}",
            "columns",
            field="",
        )
    # One search over the whole row; only a bad row pays for finding the field.
    if FIELD_CONTROL.search("".join(values)):
        for name, value in zip(header, values, strict=False):
            char = FIELD_CONTROL.search(value)
            if name and char:
                return None, RowProblem(
                    path,
                    line,
                    value,
                    f"{name}: {value!r} contains a control character "
                    f"(U+{ord(char.group()):04X}) that could break a mail header",
                    "control-chars",
                    field=name,
                )
    email_at, name_at, status_at, since_at = source.columns
    count = len(values)
    raw_email = values[email_at].strip() if email_at < count else ""
    if not raw_email:
        return None, RowProblem(path, line, "", "no address in the 'email' column", "invalid")
    try:
        email, key = normalize_address(raw_email)
    except AddressError as exc:
        return None, RowProblem(path, line, raw_email, exc.message, "invalid")
    name = values[name_at].strip() if name_at < count else ""
    problem = name_problem(name)
    if problem:
        return None, RowProblem(path, line, name, f"name: {problem}", "invalid", field="name")
    raw_status = values[status_at] if status_at < count else ""
    status = raw_status.strip().lower() or "subscribed"
    if status not in STATUSES:
        return None, RowProblem(
            path,
            line,
            raw_status,
            f"status: {raw_status!r} is neither 'subscribed' nor 'unsubscribed'",
            "status",
            field="status",
        )
    attrs: Mapping[str, str] = {}
    if source.extra:
        attrs = {k: v for k, v in zip(header, values, strict=False) if k and k not in KNOWN_COLUMNS}
    return (
        Recipient(
            email=email,
            key=key,
            name=name,
            status=status,
            attrs=attrs,
            line=line,
            subscribed_at=values[since_at].strip() if since_at < count else "",
        ),
        None,
    )


def scan_source(source: ListSource) -> Iterator[tuple[int, list[str], Recipient | RowProblem]]:
    """Every data row of an open list: (line, the row's values, its Recipient or RowProblem)."""
    with seen_keys(_expected_rows(source.path)) as seen:
        yield from _scan_rows(source, seen)


def _scan_rows(
    source: ListSource, seen: SeenKeys | SeenKeysOnDisk
) -> Iterator[tuple[int, list[str], Recipient | RowProblem]]:
    for line, values in source.rows:
        recipient, problem = _check_row(source, line, values)
        if recipient is not None:
            first = seen.add(recipient.key, line)
            if first is not None:
                problem = RowProblem(
                    source.path,
                    line,
                    recipient.email,
                    f"{recipient.email!r} is a duplicate of line {first}",
                    "duplicate",
                )
            else:
                yield line, values, recipient
                continue
        assert problem is not None
        yield line, values, problem


def scan_list(path: Path, *, encoding: str | None = None) -> Iterator[Recipient | RowProblem]:
    """Every data row of the CSV at ``path``, in order, as a Recipient or a RowProblem.

    Raises :class:`InputError` for what makes the whole file unreadable: missing file,
    no ``email`` column, text that is neither UTF-8 nor cp932 (or could be either, unless
    ``encoding`` says which), broken CSV quoting.
    """
    with open_list(path, encoding) as source:
        for _line, _values, item in scan_source(source):
            yield item


def check_readable(path: Path) -> int:
    """Read the whole list as CSV without checking its rows; the number of data rows.

    Raises :class:`InputError` as :func:`scan_list` would for an unreadable file, so a
    send can find out before its first message that the snapshot will not fail halfway
    (the C parser makes this a few percent of a full scan)."""
    with open_list(path) as source:
        return sum(1 for _ in source.rows)


def has_readers_rows(path: Path) -> bool:
    """Whether the list has a data row at all (read up to the first one only): the empty
    list ``init`` writes has none. An unreadable list counts as having rows; reading it
    for the send names its problem."""
    try:
        with open_list(path) as source:
            return next(iter(source.rows), None) is not None
    except InputError:
        return True


def _expected_rows(path: Path) -> int:
    """Rows a file probably has, from its size and the line length of its first 64 KiB."""
    with path.open("rb") as stream:
        head = stream.read(1 << 16)
    if not head:
        return 0
    size = path.stat().st_size
    return int(size * (head.count(b"\n") + 1) / len(head)) + 1
