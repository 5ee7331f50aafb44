"""The ledger's tables as a whole: which there are, in which order, and what they hold.

The table modules beside this one each know their own rows; ``digest-mail ledger info``
and ``digest-mail ledger copy`` need every table at once. :data:`TABLES` lists them
parents first (``deliveries``, ``campaign_lists`` and ``senders`` reference
``campaigns``), each with its primary key, which orders a table for reading it in pages:
a page starts after the last key of the one before (keyset paging), so a table of any
size is read a page at a time and each page is an index range, on SQLite and PostgreSQL
alike. A migration that adds a table adds it here too; a test compares this list with the
schema the migrations build, and ``ledger copy`` refuses a ledger holding a table it does
not know rather than leave it behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from digest_mail.ledger.db import Ledger


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]


TABLES: tuple[Table, ...] = (
    Table("suppressions", ("address",)),
    Table("soft_bounces", ("address", "message_id")),
    Table("approvals", ("edition",)),
    Table("schedule_runs", ("schedule", "slot")),
    Table("campaigns", ("id",)),
    Table("campaign_lists", ("campaign_id", "list_name")),
    Table("deliveries", ("campaign_id", "address")),
    Table("senders", ("campaign_id", "sender")),
)


@dataclass(frozen=True)
class LedgerInfo:
    """What ``ledger info`` shows: which database, its schema, its rows per table."""

    description: str
    kind: str
    shared: bool
    schema: int
    code_schema: int
    rows: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ledger": self.description,
            "kind": self.kind,
            "shared": self.shared,
            "schema": self.schema,
            "code_schema": self.code_schema,
            "rows": self.rows,
        }


def describe_ledger(ledger: Ledger) -> LedgerInfo:
    from digest_mail.ledger.db import SCHEMA_VERSION

    return LedgerInfo(
        description=ledger.description,
        kind=ledger.kind,
        shared=ledger.shared,
        schema=ledger.schema_version(),
        code_schema=SCHEMA_VERSION,
        rows={table.name: count_rows(ledger, table) for table in TABLES},
    )


def unknown_tables(ledger: Ledger) -> list[str]:
    """Tables of ``ledger`` that :data:`TABLES` does not name."""
    known = {table.name for table in TABLES}
    return [name for name in ledger.table_names() if name not in known]


def count_rows(ledger: Ledger, table: Table) -> int:
    count: int = ledger.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()[0]
    return count


def column_names(ledger: Ledger, table: Table) -> list[str]:
    """The table's columns, in the database's order (no row is read)."""
    cursor = ledger.execute(f"SELECT * FROM {table.name} WHERE 1 = 0")
    names = [column[0] for column in cursor.description]
    cursor.fetchall()
    return names


def read_pages(
    ledger: Ledger, table: Table, columns: Sequence[str], *, page: int
) -> Iterator[list[tuple[Any, ...]]]:
    """Every row of ``table`` (its ``columns``), in key order, ``page`` rows at a time."""
    key = ", ".join(table.key)
    selected = ", ".join(columns)
    first = f"SELECT {selected} FROM {table.name} ORDER BY {key} LIMIT ?"
    after = (
        f"SELECT {selected} FROM {table.name} WHERE ({key}) > ({', '.join('?' * len(table.key))})"
        f" ORDER BY {key} LIMIT ?"
    )
    positions = [list(columns).index(name) for name in table.key]
    last: tuple[Any, ...] | None = None
    while True:
        if last is None:
            cursor = ledger.execute(first, (page,))
        else:
            cursor = ledger.execute(after, (*last, page))
        rows = [tuple(row) for row in cursor.fetchall()]
        if not rows:
            return
        yield rows
        if len(rows) < page:
            return
        last = tuple(rows[-1][i] for i in positions)


def insert_rows(
    ledger: Ledger, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    marks = ", ".join("?" * len(columns))
    ledger.executemany(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({marks})", rows)
