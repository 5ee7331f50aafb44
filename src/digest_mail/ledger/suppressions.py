"""Suppressions and soft bounces: who must never receive mail again, and who is close.

A suppression is kept per address key (:func:`~digest_mail.audience.addresses.address_key`),
with the first reason given; unsubscribes, hard bounces, complaints and the CLI all
write here, and every send leaves the suppressed out. Soft bounces (4.x.x)
are remembered per message, so that a re-imported report counts once; the bounce
reader suppresses an address after enough of them (:mod:`digest_mail.audience.bounces`).

This module is the only place these two tables are read or written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from digest_mail.audience.addresses import address_key
from digest_mail.ledger.db import Ledger, LedgerError, utcnow

SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained", "manual")


@dataclass(frozen=True)
class Suppression:
    """One address that must never receive mail again, and why."""

    address: str
    reason: str
    source: str
    detail: str
    created_at: str


def suppress(
    ledger: Ledger,
    address: str,
    *,
    reason: str,
    source: str,
    detail: str = "",
    at: str | None = None,
) -> bool:
    """Suppress ``address``; True if it was not suppressed before (the first reason stays)."""
    if reason not in SUPPRESSION_REASONS:
        raise LedgerError(
            f"{reason!r} is not a suppression reason ({', '.join(SUPPRESSION_REASONS)})"
        )
    cursor = ledger.execute(
        "INSERT INTO suppressions (address, reason, source, detail, created_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (address) DO NOTHING",
        (address_key(address), reason, source, detail, at or utcnow()),
    )
    return bool(cursor.rowcount == 1)


def is_suppressed(ledger: Ledger, address: str) -> bool:
    row = ledger.execute(
        "SELECT 1 FROM suppressions WHERE address = ?", (address_key(address),)
    ).fetchone()
    return row is not None


def get_suppression(ledger: Ledger, address: str) -> Suppression | None:
    row = ledger.execute(
        "SELECT address, reason, source, detail, created_at FROM suppressions WHERE address = ?",
        (address_key(address),),
    ).fetchone()
    return Suppression(*row) if row else None


def unsuppress(ledger: Ledger, address: str) -> bool:
    """Lift a suppression; True if there was one. Soft-bounce history goes with it."""
    key = address_key(address)
    with ledger.transaction() as db:
        cursor = db.execute("DELETE FROM suppressions WHERE address = ?", (key,))
        db.execute("DELETE FROM soft_bounces WHERE address = ?", (key,))
    return bool(cursor.rowcount == 1)


def list_suppressions(ledger: Ledger, *, reason: str | None = None) -> list[Suppression]:
    """Every suppression, oldest first (optionally of one reason)."""
    sql = "SELECT address, reason, source, detail, created_at FROM suppressions"
    params: tuple[str, ...] = ()
    if reason is not None:
        sql += " WHERE reason = ?"
        params = (reason,)
    rows = ledger.execute(sql + " ORDER BY created_at, address", params).fetchall()
    return [Suppression(*row) for row in rows]


def count_suppressions(ledger: Ledger) -> int:
    return int(ledger.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0])


def suppressed_keys(ledger: Ledger) -> Iterator[str]:
    """Every suppressed address key, streamed (a big ledger is never a list in memory)."""
    for (address,) in ledger.execute("SELECT address FROM suppressions"):
        yield address


def record_soft_bounce(
    ledger: Ledger,
    address: str,
    *,
    message_id: str,
    status: str,
    detail: str,
    source: str,
    at: str,
) -> bool:
    """Remember one soft bounce of the message ``message_id`` (the one we sent);
    False if a soft bounce of that message was recorded before."""
    cursor = ledger.execute(
        "INSERT INTO soft_bounces (address, message_id, status, detail, source, bounced_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (address, message_id) DO NOTHING",
        (address_key(address), message_id, status, detail, source, at),
    )
    return bool(cursor.rowcount == 1)


def soft_bounce_times(ledger: Ledger, address: str) -> list[str]:
    """When each recorded soft bounce of ``address`` happened (ISO 8601 UTC)."""
    rows = ledger.execute(
        "SELECT bounced_at FROM soft_bounces WHERE address = ?", (address_key(address),)
    ).fetchall()
    return [str(row[0]) for row in rows]
