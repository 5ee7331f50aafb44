"""Subscriber lists: ``subscribers/<name>.csv``, streamed, validated and normalized.

A list is read row by row (the csv module over a text stream), so memory does not grow
with the list: a million-row list scans in the same few megabytes as a thousand-row one,
apart from the duplicate detector, which keeps 12 bytes per address (an 8-byte digest
and a line number) instead of a Python string.

Every row comes out of :func:`scan_list` as a :class:`Recipient` or a :class:`RowProblem`
(invalid address, duplicate, control characters, unknown status, extra fields): problems
are reported with file and line, never dropped and never sent to.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import fcntl
import io
import os
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from digest_mail.audience.addresses import AddressError, address_key, normalize_address
from digest_mail.errors import DigestMailError, InputError
from digest_mail.files import display_path, keep_mode, new_temp_file
from digest_mail.ledger.suppressions import (
    count_suppressions,
    is_suppressed,
    suppressed_keys,
    unsuppress,
)
from digest_mail.text import MAX_NAME, looks_like_encoded_word

if TYPE_CHECKING:
    from digest_mail.config import Workspace
    from digest_mail.ledger.db import Ledger

__all__ = [
    "ENCODINGS",
    "KNOWN_COLUMNS",
    "AddResult",
    "ImportReport",
    "ListCounts",
    "Recipient",
    "RowProblem",
    "UnknownListError",
    "add_subscriber",
    "check_readable",
    "existing_lists",
    "export_list",
    "export_list_file",
    "import_list",
    "iter_recipients",
    "neutralize_cell",
    "remove_subscriber",
    "require_list",
    "resolve_list",
    "scan_list",
    "similar_list",
    "tally_list",
    "write_atomic",
]

KNOWN_COLUMNS = ("email", "name", "status", "subscribed_at")
STATUSES = ("subscribed", "unsubscribed")
ProblemKind = Literal["invalid", "duplicate", "control-chars", "status", "columns"]

# C0 and C1 controls (CR, LF, NUL, TAB, ESC …) plus the Unicode line and paragraph
# separators: any of them in a name could end a header line and start another.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Recipient:
    """One valid row of a list.

    ``email`` is the address as written with the domain normalized (lowercased, IDNA
    normalized); ``key`` is the casefolded address used for duplicates and suppressions.
    """

    email: str
    key: str
    name: str
    status: str
    attrs: Mapping[str, str]
    line: int
    subscribed_at: str = ""


@dataclass(frozen=True)
class RowProblem:
    """A row that must not be sent to, named by file and line."""

    path: Path
    line: int
    value: str
    message: str
    kind: ProblemKind
    field: str = "email"

    def __str__(self) -> str:
        return f"{display_path(self.path)}:{self.line}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": display_path(self.path),
            "line": self.line,
            "kind": self.kind,
            "field": self.field,
            "value": self.value,
            "message": self.message,
        }


@dataclass
class ListCounts:
    """What a list holds. ``rows`` = subscribed + unsubscribed + suppressed + problems.

    ``suppressed`` counts rows marked subscribed whose address the ledger suppresses.
    """

    rows: int = 0
    subscribed: int = 0
    unsubscribed: int = 0
    suppressed: int = 0
    problems: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def add_problem(self, problem: RowProblem) -> None:
        self.rows += 1
        self.problems += 1
        self.kinds[problem.kind] = self.kinds.get(problem.kind, 0) + 1

    def as_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "subscribed": self.subscribed,
            "unsubscribed": self.unsubscribed,
            "suppressed": self.suppressed,
            "problems": self.problems,
            "problem_kinds": dict(sorted(self.kinds.items())),
        }

    def summary(self) -> str:
        text = (
            f"{self.rows} rows: {self.subscribed} subscribed, {self.unsubscribed} unsubscribed, "
            f"{self.suppressed} suppressed, {self.problems} "
            f"{'problem' if self.problems == 1 else 'problems'}"
        )
        if self.kinds:
            text += " (" + ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items())) + ")"
        return text


def _is_path(ref: str) -> bool:
    return ref.endswith((".csv", ".tsv", ".txt")) or "/" in ref or os.sep in ref


def resolve_list(
    workspace: Workspace, ref: str, *, create: bool = False, allow_similar: bool = False
) -> Path:
    """A list name (``weekly``) or the path of a CSV file.

    A list name must name an existing list, unless ``create`` (a command that may start
    a list); even then a name one typo away from an existing list is refused unless
    ``allow_similar`` (:func:`check_new_list`). A path is left to the reader's errors."""
    if _is_path(ref):
        return Path(ref)
    if create:
        return check_new_list(workspace, ref, allow_similar=allow_similar)
    return require_list(workspace, ref)


class UnknownListError(InputError):
    """A list name with no subscribers/<name>.csv; carries the lists that do exist."""

    def __init__(self, name: str, path: Path, lists: Sequence[str], *, hint: str) -> None:
        shown = ", ".join(lists) if lists else "none yet"
        super().__init__(
            f"no list {name!r}: {display_path(path)} does not exist (lists: {shown})", hint=hint
        )
        self.name = name
        self.lists = tuple(lists)


def existing_lists(workspace: Workspace) -> list[str]:
    """The names of the workspace's lists: the stems of subscribers/*.csv, sorted."""
    directory = workspace.subscribers_dir
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.csv") if p.is_file())


def similar_list(name: str, lists: Sequence[str]) -> str | None:
    """The one of ``lists`` that ``name`` looks like a typo of, if any."""
    found = difflib.get_close_matches(name, lists, n=1, cutoff=0.75)
    if not found:
        # Case slips (Weekly) are typos too.
        found = [n for n in lists if n.casefold() == name.casefold()]
    return found[0] if found else None


def require_list(workspace: Workspace, name: str) -> Path:
    """The path of the existing list ``name``; :class:`UnknownListError` naming the
    real lists (and the nearest one) when there is none: a misspelt name must never
    lead to creating a new list."""
    path = workspace.list_path(name)
    if path.is_file():
        return path
    lists = existing_lists(workspace)
    near = similar_list(name, lists)
    if near is not None:
        raise UnknownListError(name, path, lists, hint=f"Did you mean {near!r}?")
    raise UnknownListError(
        name,
        path,
        lists,
        hint=f"start the list with 'digest-mail subscribers add {name} ADDRESS'",
    )


def check_new_list(workspace: Workspace, name: str, *, allow_similar: bool = False) -> Path:
    """The path for list ``name``, which may be new: but a new name that is one typo away
    from an existing list is refused (``allow_similar`` overrides, for a list that is
    meant to look alike)."""
    path = workspace.list_path(name)
    if path.exists() or allow_similar:
        return path
    lists = existing_lists(workspace)
    near = similar_list(name, lists)
    if near is not None:
        raise UnknownListError(
            name,
            path,
            lists,
            hint=f"Did you mean {near!r}? To start a new list {name!r}, add --new-list",
        )
    return path


# --- duplicate detection in flat memory -------------------------------------------


class _SeenKeys:
    """Keys seen so far -> first line, in 12 bytes a slot (open addressing, linear probing).

    A key is stored as its 64-bit ``hash()`` (SipHash, keyed per process), never as a
    string: a false duplicate needs a 64-bit collision, about one chance in 10^7 for a
    list of a million addresses. Sized from the expected row count so that a big list
    is allocated once (about 20 bytes per row) instead of doubling and copying.
    """

    _LOAD = 0.6

    def __init__(self, expected: int = 0) -> None:
        self._count = 0
        self._allocate(max(1024, int(expected / self._LOAD) + 1))

    def _allocate(self, size: int) -> None:
        self._size = size
        self._limit = int(size * self._LOAD)
        self._keys = array("Q", [0]) * size
        self._lines = array("I", [0]) * size

    def add(self, key: str, line: int) -> int | None:
        """Record ``key`` at ``line``; the first line if it was seen before."""
        digest = (hash(key) & 0xFFFF_FFFF_FFFF_FFFF) or 1  # 0 marks an empty slot
        keys, size = self._keys, self._size
        slot = digest % size
        while True:
            found = keys[slot]
            if found == 0:
                keys[slot] = digest
                self._lines[slot] = line
                self._count += 1
                if self._count > self._limit:
                    self._grow()
                return None
            if found == digest:
                return self._lines[slot]
            slot += 1
            if slot == size:
                slot = 0

    def contains(self, key: str) -> bool:
        digest = (hash(key) & 0xFFFF_FFFF_FFFF_FFFF) or 1
        keys, size = self._keys, self._size
        slot = digest % size
        while True:
            found = keys[slot]
            if found == 0:
                return False
            if found == digest:
                return True
            slot = slot + 1 if slot + 1 < size else 0

    def _grow(self) -> None:
        old_keys, old_lines = self._keys, self._lines
        self._allocate(self._size * 2)
        keys, lines, size = self._keys, self._lines, self._size
        for digest, line in zip(old_keys, old_lines, strict=True):
            if digest:
                slot = digest % size
                while keys[slot]:
                    slot = slot + 1 if slot + 1 < size else 0
                keys[slot] = digest
                lines[slot] = line


# Past this many rows, duplicate detection moves from memory to a temporary file, so a
# send's memory stays the same from a thousand rows to a million (issue #6).
SEEN_IN_MEMORY_ROWS = 200_000


class _SeenKeysOnDisk:
    """:class:`_SeenKeys` for big lists: the same 64-bit hashes in a temporary SQLite
    file (deleted on close) whose page cache is capped at 2 MiB. Same answers, flat
    memory; a few µs a row more."""

    def __init__(self) -> None:
        import sqlite3

        # "" is a private temporary database on disk, removed when the connection closes.
        self._db = sqlite3.connect("", isolation_level=None)
        self._integrity_error = sqlite3.IntegrityError
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "cache_size=-2048"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE seen (digest INTEGER PRIMARY KEY, line INTEGER NOT NULL)")
        self._db.execute("BEGIN")  # one transaction for the whole scan: nothing to keep

    def add(self, key: str, line: int) -> int | None:
        digest = hash(key)  # a signed 64-bit int: SQLite's INTEGER holds it as is
        try:
            self._db.execute("INSERT INTO seen VALUES (?, ?)", (digest, line))
        except self._integrity_error:
            row = self._db.execute("SELECT line FROM seen WHERE digest = ?", (digest,)).fetchone()
            return int(row[0])
        return None

    def close(self) -> None:
        self._db.close()


def _expected_rows(path: Path) -> int:
    """Rows a file probably has, from its size and the line length of its first 64 KiB."""
    with path.open("rb") as stream:
        head = stream.read(1 << 16)
    if not head:
        return 0
    size = path.stat().st_size
    return int(size * (head.count(b"\n") + 1) / len(head)) + 1


# --- reading CSV ----------------------------------------------------------------------


@dataclass
class _Source:
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


_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")


@dataclass(frozen=True)
class _Undecodable:
    line: int
    bad: bytes
    after_text: bool  # decoded text beyond Latin came before the error (see _detect_encoding)


# Japanese in UTF-8 is three-byte sequences (U+0800 and up); cp932 bytes almost never
# happen to form one, while they do form two-byte ones ("ﾅｶ" is valid UTF-8).
# (Written as the complement: the range itself takes the regex compiler 6 ms.)
_WIDE = re.compile("[^\x00-\u07ff]")


@dataclass
class _Seen:
    """What a decoding pass that succeeded saw: any non-ASCII byte, any character of
    U+0800 and up (Japanese in UTF-8)."""

    non_ascii: bool = False
    wide: bool = False


def _first_undecodable(
    stream: io.BufferedReader, encoding: str, seen: _Seen | None = None
) -> _Undecodable | None:
    """Where decoding ``stream`` first fails, or None if all of it decodes (then ``seen``
    tells what it held)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    wide = False
    non_ascii = False
    while True:
        chunk = stream.read(_CHUNK)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            # Bytes still pending from the previous chunk are never a newline.
            before = exc.object[: exc.start]
            return _Undecodable(
                lines + before.count(b"\n"),
                exc.object[exc.start : exc.end],
                wide or bool(_WIDE.search(before.decode(encoding, "replace"))),
            )
        # cp932 maps unassigned bytes and user-defined characters into the private use
        # area: in a subscriber list that is a wrong guess, never a name.
        private = _PRIVATE_USE.search(text) if encoding == "cp932" else None
        if private:
            offset = len(text[: private.start()].encode(encoding))
            return _Undecodable(
                lines + chunk[:offset].count(b"\n"), private.group().encode(encoding), wide
            )
        if not chunk:
            if seen is not None:
                seen.wide, seen.non_ascii = wide, non_ascii
            return None
        wide = wide or bool(_WIDE.search(text))
        non_ascii = non_ascii or not chunk.isascii()
        lines += chunk.count(b"\n")


# A word of half-width katakana standing alone (not glued to ASCII letters or digits, as
# the misread bytes of "Müller" are: "Mﾃｼller"): what a cp932 name looks like.
_KANA_WORD = re.compile(r"(?<![A-Za-z0-9])[\uff61-\uff9f]{2,}(?![A-Za-z0-9])")
# Read as cp932, UTF-8 Latin text has its katakana glued to ASCII letters ("Mﾃｼller"):
# anywhere in the file, that settles it as UTF-8.
_GLUED = re.compile(r"[A-Za-z][^\x00-\x7f]|[^\x00-\x7f][A-Za-z]")
ENCODINGS = ("utf-8", "cp932")


def _both_readings(path: Path) -> tuple[int, str, str] | None:
    """(line, UTF-8 reading, cp932 reading) when a file that decodes as UTF-8 without one
    Japanese character also decodes as cp932 into half-width katakana words.

    cp932's half-width katakana are the bytes A1–DF, and two of them are often a valid
    UTF-8 character: ``ﾅｶﾆｼ`` (c5 b6 c6 bc) reads as ``ŶƼ``. Which one is meant cannot be
    told from the bytes; guessing either way silently garbles every name."""
    found: tuple[int, str, str] | None = None
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if raw.isascii():
                continue
            try:
                as_cp932 = raw.decode("cp932")
            except UnicodeDecodeError:
                return None
            if _PRIVATE_USE.search(as_cp932) or _GLUED.search(as_cp932):
                return None
            if found is None and _KANA_WORD.search(as_cp932):
                found = (number, raw.decode("utf-8", "replace").strip(), as_cp932.strip())
    return found


def _detect_encoding(path: Path) -> str:
    with path.open("rb") as stream:
        head = stream.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        stream.seek(0)
        seen = _Seen()
        utf8 = _first_undecodable(stream, "utf-8", seen)
        if utf8 is None:
            both = _both_readings(path) if seen.non_ascii and not seen.wide else None
            if both is not None:
                line, as_utf8, as_cp932 = both
                raise InputError(
                    "these bytes are valid UTF-8 and valid cp932 (Shift_JIS), and the two"
                    f" readings differ: UTF-8 {_excerpt(as_utf8)!r}, cp932 {_excerpt(as_cp932)!r}",
                    path=display_path(path),
                    line=line,
                    hint="say which with --encoding cp932 (a CSV saved by Excel in Japan) or"
                    " --encoding utf-8; a list that send reads must be saved as 'CSV UTF-8'"
                    " (digest-mail subscribers export LIST --encoding cp932 -o FILE writes it)",
                )
            return "utf-8"
        failure = utf8
        # When UTF-8 Japanese came before the bad bytes, the file is broken UTF-8:
        # reading it as cp932 would turn every name into mojibake.
        if not utf8.after_text:
            stream.seek(0)
            sjis = _first_undecodable(stream, "cp932")
            if sjis is None:
                return "cp932"
            failure = max(utf8, sjis, key=lambda f: f.line)
    raise InputError(
        f"neither UTF-8 nor cp932 (Shift_JIS) text: cannot decode byte(s) {failure.bad.hex(' ')}",
        path=display_path(path),
        line=failure.line,
        hint="save the file as 'CSV UTF-8' and check that line",
    )


def _excerpt(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
def _open_list(path: Path, encoding: str | None = None) -> Iterator[_Source]:
    """Open a list; ``encoding`` (one of :data:`ENCODINGS`) as the user stated it, else
    detected (a UTF-8 BOM, UTF-16, UTF-8, cp932; refused when ambiguous)."""
    shown = display_path(path)
    if encoding is not None and encoding not in ENCODINGS:
        raise InputError(f"unknown encoding {encoding!r}", path=shown, hint="use utf-8 or cp932")
    try:
        # utf-8-sig: a stated UTF-8 may still start with a BOM.
        encoding = (
            _detect_encoding(path)
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

        yield _Source(path, encoding, delimiter, raw_header, header, rows())


def _check_row(
    source: _Source, line: int, values: Sequence[str]
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
    if _CONTROL.search("".join(values)):
        for name, value in zip(header, values, strict=False):
            char = _CONTROL.search(value)
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
    problem = _name_problem(name)
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


def _scan(source: _Source) -> Iterator[tuple[int, list[str], Recipient | RowProblem]]:
    expected = _expected_rows(source.path)
    if expected > SEEN_IN_MEMORY_ROWS:
        on_disk = _SeenKeysOnDisk()
        try:
            yield from _scan_rows(source, on_disk)
        finally:
            on_disk.close()
    else:
        yield from _scan_rows(source, _SeenKeys(expected))


def _scan_rows(
    source: _Source, seen: _SeenKeys | _SeenKeysOnDisk
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
    with _open_list(path, encoding) as source:
        for _line, _values, item in _scan(source):
            yield item


def check_readable(path: Path) -> int:
    """Read the whole list as CSV without checking its rows; the number of data rows.

    Raises :class:`InputError` as :func:`scan_list` would for an unreadable file, so a
    send can find out before its first message that the snapshot will not fail halfway
    (the C parser makes this a few percent of a full scan)."""
    with _open_list(path) as source:
        return sum(1 for _ in source.rows)


def has_readers_rows(path: Path) -> bool:
    """Whether the list has a data row at all (read up to the first one only): the empty
    list ``init`` writes has none. An unreadable list counts as having rows; reading it
    for the send names its problem."""
    try:
        with _open_list(path) as source:
            return next(iter(source.rows), None) is not None
    except InputError:
        return True


def tally_list(
    path: Path,
    *,
    ledger: Ledger | None = None,
    on_problem: Callable[[RowProblem], None] | None = None,
    encoding: str | None = None,
) -> ListCounts:
    """Count a list's rows by fate; ``on_problem`` sees each problem as it is found."""
    counts = ListCounts()
    suppressed = _suppression_filter(ledger) if ledger is not None else None
    for item in scan_list(path, encoding=encoding):
        if isinstance(item, RowProblem):
            counts.add_problem(item)
            if on_problem is not None:
                on_problem(item)
            continue
        counts.rows += 1
        if item.status != "subscribed":
            counts.unsubscribed += 1
        elif suppressed is not None and suppressed(item.key):
            counts.suppressed += 1
        else:
            counts.subscribed += 1
    return counts


def _suppression_filter(ledger: Ledger) -> Callable[[str], bool]:
    """A fast ``is_suppressed`` for counting: the ledger's keys as 64-bit hashes in memory
    (12 bytes each), each hit confirmed by the ledger, so the answer stays exact."""
    seen = _SeenKeys(count_suppressions(ledger))
    for address in suppressed_keys(ledger):
        seen.add(address, 0)

    def suppressed(key: str) -> bool:
        key = address_key(key)
        return seen.contains(key) and is_suppressed(ledger, key)

    return suppressed


def iter_recipients(
    workspace: Workspace,
    list_name: str,
    ledger: Ledger,
    *,
    counts: ListCounts | None = None,
    on_excluded: Callable[[Recipient, str], None] | None = None,
) -> Iterator[Recipient | RowProblem]:
    """The send snapshot of a list: subscribed, not suppressed Recipients, and RowProblems.

    Rows that must not receive mail but are not problems are never yielded: an
    ``unsubscribed`` status, or an address the ledger suppresses. They are counted in
    ``counts`` (``unsubscribed`` / ``suppressed``, with ``subscribed`` and ``problems``
    for the rest) and passed to ``on_excluded(recipient, reason)`` with reason
    ``"unsubscribed"`` or ``"suppressed"`` when given.
    """
    counts = ListCounts() if counts is None else counts
    # One query per row was 5 % of a send (benchmarks/profiles); the in-memory filter
    # asks the ledger only about its hits, so the answer is the same.
    suppressed = _suppression_filter(ledger)
    for item in scan_list(workspace.list_path(list_name)):
        if isinstance(item, RowProblem):
            counts.add_problem(item)
            yield item
            continue
        counts.rows += 1
        if item.status != "subscribed":
            counts.unsubscribed += 1
            reason = "unsubscribed"
        elif suppressed(item.key):
            counts.suppressed += 1
            reason = "suppressed"
        else:
            counts.subscribed += 1
            yield item
            continue
        if on_excluded is not None:
            on_excluded(item, reason)


# --- writing lists ---------------------------------------------------------------------


@contextmanager
def list_lock(path: Path) -> Iterator[None]:
    """One writer at a time in a list's folder, so that two edits never lose each other.

    The lock is flock() on the folder itself: no lock file is left next to the lists.
    Readers need none: a rewrite replaces the file whole.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[TextIO], None], *, bom: bool = False) -> None:
    """Write through a temp file in the same folder, fsync, rename: never half a list."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # New files get the umask's mode (077: 0600), a replaced one keeps its own.
    fd, tmp = new_temp_file(path.parent, prefix=f".{path.name}.")
    try:
        with open(fd, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        keep_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _writer(out: TextIO, delimiter: str) -> Any:
    return csv.writer(out, delimiter=delimiter, lineterminator="\r\n")


def _column(header: list[str], name: str) -> int:
    return header.index(name) if name in header else -1


def _set(
    values: list[str], header: list[str], raw_header: list[str], name: str, value: str
) -> None:
    index = _column(header, name)
    if index < 0:
        header.append(name)
        raw_header.append(name)
        index = len(header) - 1
    while len(values) <= index:
        values.append("")
    values[index] = value


def _keeps_bom(source: _Source) -> bool:
    # Excel in Japan reads BOM-less UTF-8 as cp932: keep lists it saved readable by it.
    return source.encoding in ("utf-8-sig", "cp932", "utf-16")


@dataclass(frozen=True)
class AddResult:
    """What ``add`` did: ``added``, ``updated`` (name or status) or ``unchanged``."""

    action: Literal["added", "updated", "unchanged"]
    email: str


def _name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a reader's name in a To header, or None: one rule for rows
    read from a list and for ``subscribers add --name``."""
    char = _CONTROL.search(name)
    if char:
        return (
            f"{name!r} contains a control character (U+{ord(char.group()):04X}) "
            "that could break a mail header"
        )
    if looks_like_encoded_word(name):
        # A header would decode it (CR/LF included, spaces or not): refused before any send.
        return (
            f"{name!r} is an RFC 2047 encoded word, which a mail header would decode; "
            "write the name as plain text"
        )
    if len(name) > MAX_NAME:
        # Nobody is called that: a column mix-up, or an attack on header line limits.
        return f"{len(name)} characters long (at most {MAX_NAME})"
    return None


def _check_name(name: str) -> None:
    problem = _name_problem(name)
    if problem:
        raise InputError(problem, field="name")


def add_subscriber(
    path: Path,
    address: str,
    *,
    name: str | None = None,
    ledger: Ledger | None = None,
    resubscribe: bool = False,
    today: str = "",
) -> AddResult:
    """Subscribe ``address`` (add a row, or mark an unsubscribed row subscribed again).

    A suppressed or unsubscribed address is not re-subscribed unless ``resubscribe``;
    with it the ledger's suppression is lifted too.
    """
    try:
        email, key = normalize_address(address.strip())
    except AddressError as exc:
        raise InputError(exc.message) from None
    if name is not None:
        _check_name(name)
    with list_lock(path):
        return _add_locked(
            path, email, key, name=name, ledger=ledger, resubscribe=resubscribe, today=today
        )


def _add_locked(
    path: Path,
    email: str,
    key: str,
    *,
    name: str | None,
    ledger: Ledger | None,
    resubscribe: bool,
    today: str,
) -> AddResult:
    suppressed = ledger is not None and is_suppressed(ledger, key)
    if suppressed and not resubscribe:
        raise DigestMailError(
            f"{email} is suppressed in the ledger (it unsubscribed or bounced)",
            hint="add --resubscribe only if the person asked to subscribe again",
        )
    if not path.exists():
        header = ["email", "name", "status", "subscribed_at"]
        row = [email, name or "", "subscribed", today]

        def create(out: TextIO) -> None:
            writer = _writer(out, ",")
            writer.writerow(header)
            writer.writerow(row)

        write_atomic(path, create)
        if suppressed and ledger is not None:
            unsuppress(ledger, key)
        return AddResult("added", email)

    outcome: list[Literal["added", "updated", "unchanged"]] = ["added"]
    with _open_list(path) as source:
        header, raw_header = list(source.header), list(source.raw_header)
        if name and "name" not in header:
            header.append("name")
            raw_header.append("name")

        def rewrite(out: TextIO) -> None:
            writer = _writer(out, source.delimiter)
            writer.writerow(raw_header)
            found = False
            for _line, values, item in _scan(source):
                if not found and isinstance(item, Recipient) and item.key == key:
                    found = True
                    if item.status != "subscribed" and not resubscribe:
                        raise DigestMailError(
                            f"{email} is on the list as unsubscribed (line {item.line})",
                            hint="add --resubscribe only if the person asked to subscribe again",
                        )
                    renamed = name is not None and name != item.name
                    values = list(values)
                    if "status" in header:
                        _set(values, header, raw_header, "status", "subscribed")
                    if name is not None:
                        _set(values, header, raw_header, "name", name)
                    resubscribed = item.status != "subscribed"
                    outcome[0] = "updated" if renamed or resubscribed else "unchanged"
                writer.writerow(values)
            if not found:
                row = [""] * len(header)
                row[header.index("email")] = email
                defaults = {"name": name or "", "status": "subscribed", "subscribed_at": today}
                for column, value in defaults.items():
                    if column in header:
                        row[header.index(column)] = value
                writer.writerow(row)

        write_atomic(path, rewrite, bom=_keeps_bom(source))
    if suppressed and ledger is not None:
        unsuppress(ledger, key)
    return AddResult(outcome[0], email)


def remove_subscriber(path: Path, address: str) -> Recipient:
    """Delete the row of ``address`` from the list; the removed Recipient."""
    key = address_key(address)
    removed: list[Recipient] = []
    with list_lock(path), _open_list(path) as source:

        def rewrite(out: TextIO) -> None:
            writer = _writer(out, source.delimiter)
            writer.writerow(source.raw_header)
            for _line, values, item in _scan(source):
                if not removed and isinstance(item, Recipient) and item.key == key:
                    removed.append(item)
                    continue
                writer.writerow(values)
            if not removed:
                raise InputError(f"{address!r} is not on this list", path=display_path(path))

        write_atomic(path, rewrite, bom=_keeps_bom(source))
    return removed[0]


@dataclass
class ImportReport:
    """Counts of an import; ``problems`` lists every rejected row of the imported file."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "new": self.new,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "problems": self.problems,
        }

    def summary(self) -> str:
        return (
            f"{self.new} new, {self.updated} updated, {self.unchanged} unchanged, "
            f"{self.rejected} rejected"
        )


def _extend_header(header: list[str], raw_header: list[str], incoming: Iterable[Recipient]) -> None:
    for new in incoming:
        wanted = {"name": new.name, "status": new.status, "subscribed_at": new.subscribed_at}
        for column, value in (*wanted.items(), *new.attrs.items()):
            implicit = column == "status" and value == "subscribed"
            if value and column not in header and not implicit:
                header.append(column)
                raw_header.append(column)


def _fill(row: list[str], header: list[str], recipient: Recipient) -> bool:
    """Copy the non-empty values of ``recipient`` into ``row``; True if anything changed."""
    values = {"name": recipient.name, "status": recipient.status}
    values["subscribed_at"] = recipient.subscribed_at
    values.update(recipient.attrs)
    row += [""] * (len(header) - len(row))
    changed = False
    for column, value in values.items():
        if not value or column not in header:
            continue
        index = header.index(column)
        current = row[index]
        if column == "status":
            current = current.strip().lower() or "subscribed"
        if current != value:
            row[index] = value
            changed = True
    return changed


def import_list(
    source_path: Path,
    target_path: Path,
    *,
    ledger: Ledger | None = None,
    resubscribe: bool = False,
    encoding: str | None = None,
    today: str = "",
) -> ImportReport:
    """Merge the rows of ``source_path`` into the list at ``target_path``.

    A new address without a subscribed_at of its own gets ``today``, as ``add`` does.

    Existing addresses take the imported non-empty values (new columns are appended to
    the header, the existing column order is kept); new addresses are appended. An
    address that opted out (status ``unsubscribed`` on the list, or suppressed in the
    ledger) is not re-subscribed without ``resubscribe``: that row is rejected; with it,
    the ledger's suppression is lifted. Problem rows of the imported file are rejected
    with their line. The imported file is held in memory; the target list is streamed.
    """
    with list_lock(target_path):
        return _import_locked(
            source_path,
            target_path,
            ledger=ledger,
            resubscribe=resubscribe,
            encoding=encoding,
            today=today,
        )


def _import_locked(
    source_path: Path,
    target_path: Path,
    *,
    ledger: Ledger | None,
    resubscribe: bool,
    encoding: str | None,
    today: str = "",
) -> ImportReport:
    report = ImportReport()
    incoming: dict[str, Recipient] = {}
    for item in scan_list(source_path, encoding=encoding):
        if isinstance(item, RowProblem):
            report.rejected += 1
            report.problems.append(str(item))
        else:
            incoming[item.key] = item
    shown = display_path(source_path)
    lifted: list[str] = []

    def allowed(new: Recipient, old_status: str | None) -> bool:
        if new.status != "subscribed":
            return True
        suppressed = ledger is not None and is_suppressed(ledger, new.key)
        if old_status != "unsubscribed" and not suppressed:
            return True
        if resubscribe:
            if suppressed:
                lifted.append(new.key)
            return True
        why = "is suppressed in the ledger" if suppressed else "is unsubscribed on the list"
        report.rejected += 1
        report.problems.append(
            f"{shown}:{new.line}: {new.email!r} {why}; not re-subscribed "
            "(use --resubscribe if the person asked to subscribe again)"
        )
        return False

    def merge(source: _Source | None, out: TextIO) -> None:
        rows: Iterator[tuple[int, list[str], Recipient | RowProblem]] = iter(())
        if source is None:
            header = ["email", "name", "status", "subscribed_at"]
            raw_header, delimiter = list(header), ","
        else:
            header, raw_header = list(source.header), list(source.raw_header)
            delimiter, rows = source.delimiter, _scan(source)
        _extend_header(header, raw_header, incoming.values())
        writer = _writer(out, delimiter)
        writer.writerow(raw_header)
        for _line, values, item in rows:
            new = incoming.pop(item.key, None) if isinstance(item, Recipient) else None
            if new is not None and isinstance(item, Recipient) and allowed(new, item.status):
                values = list(values)
                changed = _fill(values, header, new)
                if changed or (lifted and lifted[-1] == new.key):
                    report.updated += 1
                else:
                    report.unchanged += 1
            writer.writerow(values)
        for new in incoming.values():
            if allowed(new, None):
                row = [""] * len(header)
                row[header.index("email")] = new.email
                _fill(row, header, new)
                if "status" in header:
                    row[header.index("status")] = new.status
                since = header.index("subscribed_at") if "subscribed_at" in header else -1
                if since >= 0 and not row[since] and new.status == "subscribed":
                    row[since] = today
                writer.writerow(row)
                report.new += 1

    if target_path.exists():
        with _open_list(target_path) as target:
            write_atomic(target_path, lambda out: merge(target, out), bom=_keeps_bom(target))
    else:
        write_atomic(target_path, lambda out: merge(None, out))
    if ledger is not None:
        for key in lifted:
            unsuppress(ledger, key)
    return report


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
    with _open_list(path, encoding) as source:
        writer = csv.writer(out, lineterminator="\r\n")

        def write(row: Sequence[str]) -> None:
            writer.writerow(row if raw else [neutralize_cell(cell) for cell in row])

        write(source.raw_header)
        email_index = source.header.index("email")
        for _line, values, item in _scan(source):
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
