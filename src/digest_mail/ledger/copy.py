"""Moving a ledger to another database (``digest-mail ledger copy``), without loss.

A team that outgrows one host moves its SQLite ledger into PostgreSQL; its history must
come along whole: above all the suppressions (an address that unsubscribed must never
get mail again), then the campaigns and deliveries that keep a rerun from doubling a
send, the approvals, schedule runs and soft bounces.

The copy is all or nothing. It writes into an empty ledger only (a destination that
holds rows is refused, naming the tables, so nothing is overwritten or doubled), in one
transaction on the destination, tables in :data:`~.tables.TABLES` order so that the
foreign keys hold at every insert. The source is read as one moment (a read transaction:
a WAL snapshot on SQLite, REPEATABLE READ on PostgreSQL) a page at a time, so a table of
millions of rows never sits in memory. Before committing, every table of the copy is
counted and read back: its row count and a checksum of every row must equal the
source's, else the transaction is rolled back and nothing was written. A PostgreSQL copy
is then analyzed, so that the first send from it is planned with its real sizes.

The checksum adds up a hash of each row, so it does not depend on the order two
databases sort text in; it covers every column, not only the keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from digest_mail.errors import LedgerError
from digest_mail.ledger.tables import (
    TABLES,
    Table,
    column_names,
    count_rows,
    insert_rows,
    read_pages,
    unknown_tables,
)

if TYPE_CHECKING:
    from digest_mail.ledger.db import Ledger

PAGE = 2000

# One moment of the source while others may still write to it. SQLite's deferred BEGIN
# reads one WAL snapshot and blocks no writer (Ledger.transaction's BEGIN IMMEDIATE
# would stop every sender for the whole copy); PostgreSQL's default, READ COMMITTED,
# would see each table at a different moment.
_SNAPSHOT_BEGIN = {
    "sqlite": "BEGIN",
    "postgresql": "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
}

_POSTGRES_ANALYZE = "ANALYZE {table}"


@dataclass(frozen=True)
class TableCopy:
    """One table: rows in the source (counted, then read) and in the copy, checksums."""

    table: str
    source_rows: int
    read_rows: int
    copied_rows: int
    source_checksum: str
    copied_checksum: str

    @property
    def ok(self) -> bool:
        return (
            self.source_rows == self.read_rows == self.copied_rows
            and self.source_checksum == self.copied_checksum
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "source_rows": self.source_rows,
            "copied_rows": self.copied_rows,
            "source_checksum": self.source_checksum,
            "copied_checksum": self.copied_checksum,
            "ok": self.ok,
        }


@dataclass(frozen=True)
class CopyReport:
    source: str
    destination: str
    tables: tuple[TableCopy, ...]

    @property
    def ok(self) -> bool:
        """Every table equal: the copy was committed. Otherwise it was rolled back."""
        return all(table.ok for table in self.tables)

    @property
    def rows(self) -> int:
        return sum(table.copied_rows for table in self.tables)

    def mismatched(self) -> list[str]:
        return [table.table for table in self.tables if not table.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "committed": self.ok,
            "tables": [table.as_dict() for table in self.tables],
        }


class _Mismatch(Exception):
    def __init__(self, report: CopyReport) -> None:
        self.report = report


class _Checksum:
    """An order-independent checksum: the sum of each row's 64-bit hash."""

    def __init__(self) -> None:
        self.total = 0

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        for row in rows:
            digest = hashlib.blake2b(repr(row).encode(), digest_size=8).digest()
            self.total = (self.total + int.from_bytes(digest)) % (1 << 64)

    def hex(self) -> str:
        return f"{self.total:016x}"


def copy_ledger(source: Ledger, destination: Ledger, *, page: int = PAGE) -> CopyReport:
    """Copy every row of ``source`` into the empty ``destination``, verified; a report
    whose ``ok`` is False means the copy did not match and was rolled back."""
    if source.description == destination.description:
        raise LedgerError(
            f"{source.description}: the source and the destination are the same ledger",
            hint="name another database or file as the destination",
        )
    if unknown := unknown_tables(source):
        raise LedgerError(
            f"{source.description}: holds tables this digest-mail cannot copy: "
            f"{', '.join(unknown)}",
            hint="copy with the digest-mail that made them",
        )
    columns = {table.name: _same_columns(source, destination, table) for table in TABLES}
    try:
        with destination.transaction():
            _require_empty(destination)
            read = _copy_rows(source, destination, columns, page=page)
            report = CopyReport(
                source=source.description,
                destination=destination.description,
                tables=tuple(
                    _verify(destination, table, columns[table.name], read[table.name], page=page)
                    for table in TABLES
                ),
            )
            if not report.ok:
                raise _Mismatch(report)
    except _Mismatch as mismatch:
        return mismatch.report
    if destination.kind == "postgresql":
        # The planner knows nothing of rows that arrived in bulk until autovacuum gets to
        # them; the first send from the copy should not plan its claims blind.
        for table in TABLES:
            destination.execute(_POSTGRES_ANALYZE.format(table=table.name))
    return report


def _same_columns(source: Ledger, destination: Ledger, table: Table) -> list[str]:
    names = column_names(source, table)
    if sorted(names) != sorted(column_names(destination, table)):
        raise LedgerError(
            f"the table {table.name} has other columns in {destination.description} than in "
            f"{source.description}",
            hint="run 'digest-mail ledger migrate URL' on both ledgers",
        )
    return names


def _require_empty(destination: Ledger) -> None:
    held = {table.name: count_rows(destination, table) for table in TABLES}
    if full := [f"{name} {count}" for name, count in held.items() if count]:
        raise LedgerError(
            f"{destination.description}: the destination already holds rows "
            f"({', '.join(full)}); ledger copy writes only into an empty ledger",
            hint="copy into a new, empty database or SQLite file",
        )


@contextmanager
def _snapshot(ledger: Ledger) -> Iterator[None]:
    ledger.execute(_SNAPSHOT_BEGIN[ledger.kind])
    try:
        yield
    finally:
        # Only read: nothing to keep.
        ledger.backend.rollback()


def _copy_rows(
    source: Ledger, destination: Ledger, columns: dict[str, list[str]], *, page: int
) -> dict[str, tuple[int, int, str]]:
    """Per table: (rows counted in the source, rows read and written, their checksum)."""
    read: dict[str, tuple[int, int, str]] = {}
    with _snapshot(source):
        for table in TABLES:
            counted = count_rows(source, table)
            checksum = _Checksum()
            done = 0
            for rows in read_pages(source, table, columns[table.name], page=page):
                insert_rows(destination, table, columns[table.name], rows)
                checksum.add(rows)
                done += len(rows)
            read[table.name] = (counted, done, checksum.hex())
    return read


def _verify(
    destination: Ledger,
    table: Table,
    columns: list[str],
    read: tuple[int, int, str],
    *,
    page: int,
) -> TableCopy:
    checksum = _Checksum()
    for rows in read_pages(destination, table, columns, page=page):
        checksum.add(rows)
    counted, done, source_checksum = read
    return TableCopy(
        table=table.name,
        source_rows=counted,
        read_rows=done,
        copied_rows=count_rows(destination, table),
        source_checksum=source_checksum,
        copied_checksum=checksum.hex(),
    )
