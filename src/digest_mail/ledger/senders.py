"""Senders: each run of ``send`` on a campaign, on whatever host, with the relay it uses.

One campaign may be sent by several processes at once on a shared (PostgreSQL) ledger,
each claiming its own batches of rows (``deliveries.sender`` names the holder). A sender
is a row here and a session lock (:meth:`~.db.Ledger.try_lock`, named by
:func:`lock_name`) that it holds for its whole run: the database (or, on SQLite, the
kernel) drops the lock when the process dies, so "is it alive" is never guessed from
timestamps. A sender found dead is recorded ``stopped`` with the note :data:`DIED`; the
rows it held are settled by :func:`~.campaigns.settle_dead_senders`.

This module is the only place the ``senders`` table is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from digest_mail.ledger.db import Ledger, utcnow

DIED = "its process died while sending"


@dataclass(frozen=True)
class SenderRow:
    """One run of ``send`` on a campaign."""

    sender: str
    host: str
    pid: int
    relay: str
    state: str  # sending, finished, stopped
    note: str
    started_at: str
    finished_at: str | None


def lock_name(campaign_id: str, sender: str) -> str:
    """The session lock a sender holds while it runs."""
    return f"sender:{campaign_id}:{sender}"


def register(ledger: Ledger, campaign_id: str, sender: str, *, host: str, pid: int) -> None:
    """A new sender of the campaign, alive from now (its lock is taken by the caller)."""
    ledger.execute(
        "INSERT INTO senders (campaign_id, sender, host, pid, state, started_at) "
        "VALUES (?, ?, ?, ?, 'sending', ?)",
        # To the microsecond: senders started in one second are listed in their order.
        (campaign_id, sender, host, pid, datetime.now(UTC).isoformat(timespec="microseconds")),
    )


def set_relay(ledger: Ledger, campaign_id: str, sender: str, relay: str) -> None:
    ledger.execute(
        "UPDATE senders SET relay = ? WHERE campaign_id = ? AND sender = ?",
        (relay, campaign_id, sender),
    )


def finish(ledger: Ledger, campaign_id: str, sender: str, state: str, note: str = "") -> None:
    """How this sender's run ended: ``finished`` or ``stopped`` (and why)."""
    ledger.execute(
        "UPDATE senders SET state = ?, note = ?, finished_at = ? WHERE campaign_id = ? "
        "AND sender = ?",
        (state, note, utcnow(), campaign_id, sender),
    )


def sender_rows(ledger: Ledger, campaign_id: str) -> list[SenderRow]:
    """Every sender the campaign has had, first started first."""
    rows = ledger.execute(
        "SELECT sender, host, pid, relay, state, note, started_at, finished_at FROM senders "
        "WHERE campaign_id = ? ORDER BY started_at, sender",
        (campaign_id,),
    ).fetchall()
    return [SenderRow(*row) for row in rows]


def live_senders(ledger: Ledger, campaign_id: str) -> set[str]:
    """The senders of the campaign whose process is alive now (they hold their lock)."""
    rows = ledger.execute(
        "SELECT sender FROM senders WHERE campaign_id = ? AND state = 'sending'", (campaign_id,)
    ).fetchall()
    return {row[0] for row in rows if ledger.is_locked(lock_name(campaign_id, row[0]))}


def record_dead(ledger: Ledger, campaign_id: str) -> list[str]:
    """Senders still recorded ``sending`` whose lock nobody holds: their process died.
    Recorded as stopped (:data:`DIED`) and returned. A sender takes its lock before its
    row is written, so one that is starting is never taken for dead."""
    rows = ledger.execute(
        "SELECT sender FROM senders WHERE campaign_id = ? AND state = 'sending'", (campaign_id,)
    ).fetchall()
    dead = [row[0] for row in rows if not ledger.is_locked(lock_name(campaign_id, row[0]))]
    for sender in dead:
        finish(ledger, campaign_id, sender, "stopped", DIED)
    return dead


def discard(ledger: Ledger, campaign_id: str) -> None:
    ledger.execute("DELETE FROM senders WHERE campaign_id = ?", (campaign_id,))
