"""The ledger's tables as a whole: which there are, in which order, and what they hold.

The table modules beside this one each know their own rows; ``digest-mail ledger info``
needs every table at once. :data:`TABLES` lists them parents first (``deliveries``,
``campaign_lists`` and ``senders`` reference ``campaigns``), each with its primary key.
A migration that adds a table adds it here too: a test compares this list with the
schema the migrations build.
"""

from __future__ import annotations

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


def count_rows(ledger: Ledger, table: Table) -> int:
    count: int = ledger.execute(f"SELECT COUNT(*) FROM {table.name}").fetchone()[0]
    return count
