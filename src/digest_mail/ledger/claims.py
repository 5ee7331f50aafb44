"""The send path's statements: claim rows in a sender's name, record the answers, let
go of what is left, and settle the rows of senders that died.

A sender claims small batches of queued rows (``queued`` → ``sending``, each given its
Message-ID) *before* their messages go out, in its own name (``deliveries.sender``), and
commits the answers with its next claim. On a shared ledger several senders claim at
once: rows another sender's claim holds at that moment are passed over (``FOR UPDATE
SKIP LOCKED``), and an answer is written only where the row is still the sender's own.

The statements are batched (a statement per row cost more than the rest of a claim,
profile 04): a claim reads the batch's seqs, then marks it with one UPDATE … RETURNING
joined to the Message-IDs the caller made for it (a ``VALUES`` list); results are
written with one UPDATE per distinct outcome. This module and :mod:`~.campaigns` are
the only places the ``deliveries`` table is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from digest_mail.ledger.db import Ledger, LedgerError, utcnow
from digest_mail.ledger.suppressions import suppress

SUPPRESSED_SINCE_SNAPSHOT = "suppressed since the snapshot"


class ClaimedRow(Protocol):
    """What the ledger reads of a claimed delivery (the sender's job)."""

    @property
    def seq(self) -> int: ...
    @property
    def address(self) -> str: ...
    @property
    def attempts(self) -> int: ...
    @property
    def message_id(self) -> str: ...


class Outcome(Protocol):
    """One answer for a claimed row, as :func:`record_results` writes it."""

    @property
    def state(self) -> str: ...
    @property
    def job(self) -> ClaimedRow: ...
    @property
    def code(self) -> int | None: ...
    @property
    def reply(self) -> str: ...
    @property
    def bounced(self) -> bool: ...


# A claimed row, as the sender takes it: seq, address, email, name, attempts, message_id.
Claimed = tuple[int, str, str, str, int, str]


# --- before a run sends ------------------------------------------------------------
def mark_uncertain(ledger: Ledger, campaign_id: str, dead: Sequence[str]) -> int:
    """Rows left ``sending`` by senders that died (``dead``, and rows of a ledger made
    before senders were recorded): we cannot know if they went out. Rows a dead sender
    held for a retry are free for any sender again. Rows of live senders stay theirs."""
    marks = ", ".join("?" * len(dead)) or "''"
    with ledger.transaction():
        cursor = ledger.execute(
            "UPDATE deliveries SET state = 'uncertain', uncertain = 1, updated_at = ? "
            f"WHERE campaign_id = ? AND state = 'sending' AND sender IN ('', {marks})",
            (utcnow(), campaign_id, *dead),
        )
        if dead:
            ledger.execute(
                "UPDATE deliveries SET sender = '' WHERE campaign_id = ? AND state = 'queued' "
                f"AND sender IN ({marks})",
                (campaign_id, *dead),
            )
    return int(cursor.rowcount)


def in_flight_holders(ledger: Ledger, campaign_id: str) -> list[str]:
    """The senders holding rows in flight now (alive or not)."""
    rows = ledger.execute(
        "SELECT DISTINCT sender FROM deliveries WHERE campaign_id = ? AND state = 'sending' "
        "AND sender != ''",
        (campaign_id,),
    )
    return [row[0] for row in rows]


def release(ledger: Ledger, campaign_id: str, sender: str) -> None:
    """The end of a sender's run: the queued rows it held (waiting for a retry, or
    claimed and never tried) are free for any sender."""
    ledger.execute(
        "UPDATE deliveries SET sender = '' WHERE campaign_id = ? AND sender = ? "
        "AND state = 'queued'",
        (campaign_id, sender),
    )


def requeue(ledger: Ledger, campaign_id: str, *, uncertain: bool, unanswered_reply: str) -> None:
    """Deferred rows get a fresh retry window; uncertain ones only when asked. Failed
    rows the relay never answered that carry ``unanswered_reply`` are queued again."""
    with ledger.transaction():
        ledger.execute(
            "UPDATE deliveries SET state = 'queued', sender = '', updated_at = ? "
            "WHERE campaign_id = ? AND (state IN ('deferred', ?) "
            "OR (state = 'failed' AND last_code IS NULL AND last_reply = ?))",
            (utcnow(), campaign_id, "uncertain" if uncertain else "deferred", unanswered_reply),
        )


def apply_suppressions(ledger: Ledger, campaign_id: str) -> None:
    """Addresses suppressed since the snapshot (an unsubscribe mid-send) are not sent.
    Rows another sender holds for a retry are its own to settle."""
    with ledger.transaction():
        ledger.execute(
            "UPDATE deliveries SET state = 'suppressed', last_reply = ?, "
            "updated_at = ? WHERE campaign_id = ? AND state = 'queued' AND sender = '' "
            "AND address IN (SELECT address FROM suppressions)",
            (SUPPRESSED_SINCE_SNAPSHOT, utcnow(), campaign_id),
        )


# --- the send path -----------------------------------------------------------------
def claim(
    ledger: Ledger,
    campaign_id: str,
    after_seq: int,
    limit: int,
    *,
    message_ids: Callable[[], str],
    sender: str = "",
    results: Sequence[Outcome] = (),
    source: str = "",
    wait: bool = False,
) -> tuple[list[Claimed], int | None]:
    """The next ``limit`` free queued rows after ``after_seq``, marked ``sending``, held
    by ``sender`` and given a Message-ID (``message_ids()``) unless they have one,
    committed; and the last seq looked at (None: nothing left). Addresses suppressed
    since the snapshot (an unsubscribe during the send) are marked ``suppressed``
    instead. ``results`` of earlier jobs are recorded in the same transaction: one
    commit per batch.

    On a shared ledger, rows another sender's claim has locked at this moment are
    passed over (``FOR UPDATE SKIP LOCKED``): several senders take disjoint batches
    without waiting for each other; with ``wait``, the claim waits for them instead
    (the last pass of a run, so that it never mistakes another sender's batch for rows
    left unsent)."""
    with ledger.transaction():
        if results:
            _record(ledger, campaign_id, results, source=source, sender=sender)
        # Whether each reader was suppressed since the snapshot (an unsubscribe during
        # the send) is one index probe per row, a LEFT JOIN: as a subquery PostgreSQL
        # read the whole suppressions table into a hash each time (50 ms a claim with
        # 100,000 suppressions, against 0.2 ms).
        batch = ledger.execute(
            "SELECT deliveries.seq, suppressions.address IS NOT NULL FROM deliveries "
            "LEFT JOIN suppressions ON suppressions.address = deliveries.address "
            "WHERE campaign_id = ? AND state = 'queued' AND sender = '' AND seq > ? "
            "ORDER BY deliveries.seq LIMIT ?" + (ledger.lock_rows if wait else ledger.skip_locked),
            (campaign_id, after_seq, limit),
        ).fetchall()
        if not batch:
            return [], None
        # Each row is offered a new Message-ID; one it already has (a row queued again) stays.
        values = ", ".join("(?, ?, ?)" for _ in batch)
        rows = ledger.execute(
            f"WITH batch (seq, new_id, gone) AS (VALUES {values}) "
            "UPDATE deliveries SET "
            "state = CASE WHEN batch.gone = 1 THEN 'suppressed' ELSE 'sending' END, "
            "last_reply = CASE WHEN batch.gone = 1 THEN ? ELSE last_reply END, "
            "message_id = CASE WHEN message_id = '' AND batch.gone = 0 "
            "THEN batch.new_id ELSE message_id END, "
            "sender = ?, updated_at = ? "
            "FROM batch WHERE deliveries.campaign_id = ? AND deliveries.seq = batch.seq "
            "RETURNING deliveries.seq, address, email, name, attempts, message_id, state",
            (
                *(value for seq, gone in batch for value in (seq, message_ids(), 1 if gone else 0)),
                SUPPRESSED_SINCE_SNAPSHOT,
                sender,
                utcnow(),
                campaign_id,
            ),
        ).fetchall()
    rows.sort(key=lambda row: row[0])  # RETURNING has no order; the queue goes by seq
    claimed = [row[:6] for row in rows if row[6] == "sending"]
    return claimed, rows[-1][0]


def claim_retries(
    ledger: Ledger, campaign_id: str, jobs: Sequence[ClaimedRow], *, sender: str = ""
) -> None:
    """Jobs whose retry is due go back to ``sending``, keeping their Message-ID."""
    now = utcnow()
    with ledger.transaction():
        ledger.executemany(
            "UPDATE deliveries SET state = 'sending', message_id = ?, updated_at = ? "
            "WHERE campaign_id = ? AND seq = ? AND address = ? AND sender = ?",
            [(job.message_id, now, campaign_id, job.seq, job.address, sender) for job in jobs],
        )


def record_results(
    ledger: Ledger, campaign_id: str, results: Sequence[Outcome], *, source: str, sender: str = ""
) -> None:
    """Commit a batch of answers; a bounce also suppresses its address."""
    with ledger.transaction():
        _record(ledger, campaign_id, results, source=source, sender=sender)


def _record(
    ledger: Ledger, campaign_id: str, results: Sequence[Outcome], *, source: str, sender: str
) -> None:
    # Nearly every result of a batch is the same ("sent", 1 attempt, 250): one UPDATE
    # per distinct outcome, over the seqs of its jobs.
    now = utcnow()
    # A job's last result wins, as it would row by row.
    last = {result.job.seq: result for result in results}
    groups: dict[tuple[str, int, int | None, str], list[ClaimedRow]] = {}
    for result in last.values():
        key = (result.state, result.job.attempts, result.code, result.reply)
        groups.setdefault(key, []).append(result.job)
    for (state, attempts, code, reply), jobs in groups.items():
        marks = ", ".join("?" * len(jobs))
        updated = ledger.execute(
            "UPDATE deliveries SET state = ?, attempts = ?, last_code = ?, last_reply = ?, "
            "updated_at = ?, uncertain = CASE WHEN ? = 'uncertain' THEN 1 ELSE uncertain END "
            f"WHERE campaign_id = ? AND sender = ? AND seq IN ({marks}) RETURNING address",
            (
                state,
                attempts,
                code,
                reply,
                now,
                state,
                campaign_id,
                sender,
                *(job.seq for job in jobs),
            ),
        ).fetchall()
        if sorted(row[0] for row in updated) != sorted(job.address for job in jobs):
            # A row is found by its seq and its holder; if one ever held another
            # address, or another sender settled it (this one was taken for dead), the
            # rollback keeps every row as it was.
            raise LedgerError(
                f"ledger rows of campaign {campaign_id} moved or were taken over while "
                "they were being sent",
                hint="run the send again: rows left 'sending' become 'uncertain'",
            )
    for result in results:
        if result.bounced:
            suppress(
                ledger,
                result.job.address,
                reason="bounced",
                source=source,
                detail=f"{result.code} {result.reply}",
            )
