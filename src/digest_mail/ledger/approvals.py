"""Approvals: the editor's go-ahead for an edition, as rows pinned to a content hash.

One row per edition; approving again replaces it, withdrawing stamps ``withdrawn_at``.
Whether an approval still counts (the draft on disk may have changed since) is judged
by :mod:`digest_mail.schedule.approval`; this module is the only place the
``approvals`` table is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass

from digest_mail.ledger.db import Ledger

__all__ = ["Approval", "get_approval", "list_approvals", "record_approval", "withdraw_approval"]


@dataclass(frozen=True)
class Approval:
    """One row of the ``approvals`` table."""

    edition: str
    content_hash: str
    approved_at: str
    approved_by: str
    withdrawn_at: str | None


def _row(row: object) -> Approval:
    return Approval(
        edition=row["edition"],  # type: ignore[index]
        content_hash=row["content_hash"],  # type: ignore[index]
        approved_at=row["approved_at"],  # type: ignore[index]
        approved_by=row["approved_by"],  # type: ignore[index]
        withdrawn_at=row["withdrawn_at"],  # type: ignore[index]
    )


def get_approval(ledger: Ledger, edition: str) -> Approval | None:
    row = ledger.execute(
        "SELECT edition, content_hash, approved_at, approved_by, withdrawn_at"
        " FROM approvals WHERE edition = ?",
        (edition,),
    ).fetchone()
    return None if row is None else _row(row)


def list_approvals(ledger: Ledger) -> list[Approval]:
    """Every approval ever recorded (withdrawn ones too), newest approval first."""
    rows = ledger.execute(
        "SELECT edition, content_hash, approved_at, approved_by, withdrawn_at"
        " FROM approvals ORDER BY approved_at DESC, edition DESC"
    ).fetchall()
    return [_row(r) for r in rows]


def record_approval(
    ledger: Ledger, edition: str, *, content_hash: str, approved_at: str, approved_by: str
) -> None:
    """Approve ``edition`` at ``content_hash``, replacing any earlier (or withdrawn) one."""
    ledger.execute(
        "INSERT INTO approvals"
        " (edition, content_hash, approved_at, approved_by, withdrawn_at)"
        " VALUES (?, ?, ?, ?, NULL)"
        " ON CONFLICT (edition) DO UPDATE SET content_hash = excluded.content_hash,"
        " approved_at = excluded.approved_at, approved_by = excluded.approved_by,"
        " withdrawn_at = NULL",
        (edition, content_hash, approved_at, approved_by),
    )


def withdraw_approval(ledger: Ledger, edition: str, *, at: str) -> None:
    ledger.execute("UPDATE approvals SET withdrawn_at = ? WHERE edition = ?", (at, edition))
