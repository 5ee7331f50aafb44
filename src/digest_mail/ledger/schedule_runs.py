"""Schedule runs: one row per cron slot, ever, so that a slot is sent once.

The claim is the primary key: :func:`claim_slot` inserts ``(schedule, slot)`` and does
nothing on conflict, so of any number of overlapping run-due processes exactly one
gets the row. The row then follows the slot: claimed, sending, sent, skipped or failed,
with the edition, the campaign and a note for people. Slots are stored as ISO 8601 UTC
text (:func:`slot_key`), which sorts in time order.

This module is the only place the ``schedule_runs`` table is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from digest_mail.ledger.db import Ledger

__all__ = [
    "RunState",
    "ScheduleRun",
    "claim_slot",
    "get_run",
    "list_runs",
    "slot_key",
    "update_run",
]

RunState = Literal["claimed", "sending", "sent", "skipped", "failed"]


@dataclass(frozen=True)
class ScheduleRun:
    """One row of ``schedule_runs``."""

    schedule: str
    slot: str
    state: RunState
    edition: str | None
    campaign_id: str | None
    claimed_at: str
    finished_at: str | None
    note: str


def slot_key(slot: datetime) -> str:
    return slot.astimezone(UTC).isoformat(timespec="seconds")


def get_run(ledger: Ledger, schedule: str, slot: datetime) -> ScheduleRun | None:
    row = ledger.execute(
        "SELECT schedule, slot, state, edition, campaign_id, claimed_at, finished_at, note"
        " FROM schedule_runs WHERE schedule = ? AND slot = ?",
        (schedule, slot_key(slot)),
    ).fetchone()
    return None if row is None else ScheduleRun(**dict(row))


def list_runs(ledger: Ledger, schedule: str | None = None) -> list[ScheduleRun]:
    query = (
        "SELECT schedule, slot, state, edition, campaign_id, claimed_at, finished_at, note"
        " FROM schedule_runs"
    )
    args: tuple[str, ...] = ()
    if schedule is not None:
        query += " WHERE schedule = ?"
        args = (schedule,)
    return [
        ScheduleRun(**dict(r)) for r in ledger.execute(query + " ORDER BY slot, schedule", args)
    ]


def claim_slot(
    ledger: Ledger,
    schedule: str,
    slot: datetime,
    *,
    state: RunState,
    edition: str | None,
    note: str,
    now: datetime,
) -> bool:
    """Record the slot if nobody has: True for exactly one of any number of callers."""
    stamp = now.astimezone(UTC).isoformat(timespec="seconds")
    finished = stamp if state == "skipped" else None
    with ledger.transaction() as db:
        cursor = db.execute(
            "INSERT INTO schedule_runs"
            " (schedule, slot, state, edition, claimed_at, finished_at, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (schedule, slot) DO NOTHING",
            (schedule, slot_key(slot), state, edition, stamp, finished, note),
        )
        return bool(cursor.rowcount == 1)


def update_run(
    ledger: Ledger,
    schedule: str,
    slot: datetime,
    *,
    state: RunState,
    note: str | None = None,
    campaign_id: str | None = None,
    finished: datetime | None = None,
) -> None:
    """Move a claimed slot on (the columns not given keep their values)."""
    sets = ["state = ?"]
    args: list[Any] = [state]
    if note is not None:
        sets.append("note = ?")
        args.append(note)
    if campaign_id is not None:
        sets.append("campaign_id = ?")
        args.append(campaign_id)
    if finished is not None:
        sets.append("finished_at = ?")
        args.append(finished.astimezone(UTC).isoformat(timespec="seconds"))
    with ledger.transaction() as db:
        db.execute(
            f"UPDATE schedule_runs SET {', '.join(sets)} WHERE schedule = ? AND slot = ?",
            (*args, schedule, slot_key(slot)),
        )
