"""Campaigns and deliveries: every recipient's state, so that a rerun never doubles a send.

A campaign is one edition sent to one or more lists (``campaigns``, ``campaign_lists``);
each of its recipients is one ``deliveries`` row whose ``state`` says where that reader
stands (queued, sending, sent, deferred, failed, suppressed, skipped, uncertain). The
delivery stage decides what happens; this module only reads and writes the rows, so
that the SQL can move to PostgreSQL without touching the sender. This module is the
only place these tables are read or written: functions taking the :class:`Ledger` and,
for one campaign's rows, its id.

The SQL is portable: rows are found by their keys (``(campaign_id, address)`` and the
unique ``(campaign_id, seq)``), never by ``rowid``, with no planner hints and no
functions registered from Python. Message-IDs are made by the caller and handed in.

The send path's statements are batched (a statement per row cost more than the rest of
a claim, profile 04): a claim reads the batch's seqs, then marks it with one UPDATE …
RETURNING joined to the Message-IDs the caller made for it (a ``VALUES`` list); results
are written with one UPDATE per distinct outcome.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from digest_mail.ledger import senders
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


# --- the campaign row ----------------------------------------------------------
def campaign_row(ledger: Ledger, campaign_id: str) -> Any:
    return ledger.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()


def create_campaign(
    ledger: Ledger,
    campaign_id: str,
    *,
    edition: str,
    list_name: str,
    kind: str,
    content_hash: str,
    lists: Sequence[str] = (),
) -> None:
    # Two senders starting at once on a shared ledger both try: one row is made.
    with ledger.transaction():
        ledger.execute(
            "INSERT INTO campaigns (id, edition, list_name, kind, content_hash, state, "
            "created_at) VALUES (?, ?, ?, ?, ?, 'snapshotting', ?) "
            "ON CONFLICT (id) DO NOTHING",
            (campaign_id, edition, list_name, kind, content_hash, utcnow()),
        )
        ledger.executemany(
            "INSERT INTO campaign_lists (campaign_id, list_name) VALUES (?, ?) "
            "ON CONFLICT (campaign_id, list_name) DO NOTHING",
            [(campaign_id, name) for name in (lists or (list_name,))],
        )


def discard_campaign(ledger: Ledger, campaign_id: str) -> None:
    with ledger.transaction():
        ledger.execute("DELETE FROM deliveries WHERE campaign_id = ?", (campaign_id,))
        ledger.execute("DELETE FROM campaign_lists WHERE campaign_id = ?", (campaign_id,))
        senders.discard(ledger, campaign_id)
        ledger.execute("DELETE FROM campaigns WHERE id = ?", (campaign_id,))


def campaign_lists(ledger: Ledger, campaign_id: str) -> tuple[str, ...]:
    rows = ledger.execute(
        "SELECT list_name FROM campaign_lists WHERE campaign_id = ? ORDER BY list_name",
        (campaign_id,),
    ).fetchall()
    return tuple(row[0] for row in rows)


def set_content_hash(ledger: Ledger, campaign_id: str, content_hash: str) -> None:
    with ledger.transaction():
        ledger.execute(
            "UPDATE campaigns SET content_hash = ? WHERE id = ?", (content_hash, campaign_id)
        )


def mark_started(ledger: Ledger, campaign_id: str) -> None:
    with ledger.transaction():
        ledger.execute(
            "UPDATE campaigns SET started_at = COALESCE(started_at, ?) WHERE id = ?",
            (utcnow(), campaign_id),
        )


def finish_campaign(ledger: Ledger, campaign_id: str, state: str, note: str = "") -> None:
    """Record how the run ended. A campaign whose snapshot never completed stays
    ``snapshotting``, so that the next run completes it."""
    with ledger.transaction():
        ledger.execute(
            "UPDATE campaigns SET note = ?, "
            "finished_at = CASE WHEN state = 'snapshotting' THEN NULL ELSE ? END, "
            "state = CASE WHEN state = 'snapshotting' THEN state ELSE ? END WHERE id = ?",
            (note, utcnow() if state == "finished" else None, state, campaign_id),
        )


# --- the snapshot: one row per recipient -----------------------------------------
def restart_snapshot(ledger: Ledger, campaign_id: str) -> int:
    """Begin the snapshot again; the seq that new rows come after.

    Rows never claimed (no Message-ID yet) are deleted and made again from the list
    as it is now. Rows a run claimed while its snapshot was still being written stay
    as they are, so nobody gets the edition twice: the new snapshot skips their
    addresses (:func:`insert_deliveries`)."""
    with ledger.transaction():
        ledger.execute(
            "DELETE FROM deliveries WHERE campaign_id = ? AND message_id = ''", (campaign_id,)
        )
        last: int = ledger.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM deliveries WHERE campaign_id = ?", (campaign_id,)
        ).fetchone()[0]
    return last


def refresh_statistics(ledger: Ledger) -> None:
    """The deliveries table just grew (a snapshot's first rows, or all of them): the
    database plans the claims with its real size."""
    ledger.analyze("deliveries")


def insert_deliveries(ledger: Ledger, campaign_id: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Commit snapshot rows (campaign_id, seq, address, email, name, state, last_reply,
    updated_at); an address that already has a row keeps it."""
    with ledger.transaction():
        ledger.executemany(
            "INSERT INTO deliveries (campaign_id, seq, address, email, name, state, "
            "last_reply, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (campaign_id, address) DO NOTHING",
            rows,
        )


def complete_snapshot(ledger: Ledger, campaign_id: str, *, already_received: int) -> None:
    """Every row is in: the campaign is ``sending``, its totals counted from the rows
    (an address on two lists is one recipient)."""
    with ledger.transaction():
        counts = count_states(ledger, campaign_id)
        skipped = counts["skipped"]
        ledger.execute(
            "UPDATE campaigns SET state = 'sending', total = ?, skipped_invalid = ?, "
            "already_received = ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
            (sum(counts.values()) - skipped, skipped, already_received, utcnow(), campaign_id),
        )


# --- where the rows stand ----------------------------------------------------------
def count_states(ledger: Ledger, campaign_id: str) -> Counter[str]:
    """Rows by state; a state no row is in counts 0."""
    rows = ledger.execute(
        "SELECT state, COUNT(*) FROM deliveries WHERE campaign_id = ? GROUP BY state",
        (campaign_id,),
    ).fetchall()
    return Counter({state: n for state, n in rows})


def claimed_any(ledger: Ledger, campaign_id: str) -> bool:
    """Whether any row was ever claimed for sending (it has a Message-ID)."""
    row = ledger.execute(
        "SELECT 1 FROM deliveries WHERE campaign_id = ? AND message_id != '' LIMIT 1",
        (campaign_id,),
    ).fetchone()
    return row is not None


def delivery_emails(
    ledger: Ledger, campaign_id: str, states: Iterable[str], *, limit: int | None = None
) -> list[str]:
    """The addresses (as written) of rows in ``states``, in queue order."""
    wanted = tuple(states)
    marks = ", ".join("?" * len(wanted))
    sql = f"SELECT email FROM deliveries WHERE campaign_id = ? AND state IN ({marks}) ORDER BY seq"
    params: tuple[Any, ...] = (campaign_id, *wanted)
    if limit is not None:
        sql += " LIMIT ?"
        params += (limit,)
    return [row[0] for row in ledger.execute(sql, params)]


def orphaned_emails(ledger: Ledger, campaign_id: str, live: Collection[str]) -> list[str]:
    """The addresses (as written) of rows in flight with no live sender, in queue order."""
    marks = ", ".join("?" * len(live)) or "''"
    rows = ledger.execute(
        "SELECT email FROM deliveries WHERE campaign_id = ? AND state = 'sending' "
        f"AND sender NOT IN ({marks}) ORDER BY seq",
        (campaign_id, *live),
    )
    return [row[0] for row in rows]


def failures(ledger: Ledger, campaign_id: str, *, limit: int) -> list[dict[str, Any]]:
    """Failed and deferred rows, in queue order: whom, the last reply, how often tried."""
    rows = ledger.execute(
        "SELECT email, last_code AS code, last_reply AS reply, attempts FROM deliveries "
        "WHERE campaign_id = ? AND state IN ('failed', 'deferred') ORDER BY seq LIMIT ?",
        (campaign_id, limit),
    )
    return [dict(row) for row in rows]


def count_unanswered_failures(ledger: Ledger, campaign_id: str, reply: str) -> int:
    """Failed rows the relay never answered (no code) that carry our own ``reply``."""
    count: int = ledger.execute(
        "SELECT COUNT(*) FROM deliveries WHERE campaign_id = ? AND state = 'failed' "
        "AND last_code IS NULL AND last_reply = ?",
        (campaign_id, reply),
    ).fetchone()[0]
    return count


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


def count_by_sender(ledger: Ledger, campaign_id: str) -> dict[str, Counter[str]]:
    """Rows by the sender that holds or last answered them, then by state."""
    rows = ledger.execute(
        "SELECT sender, state, COUNT(*) FROM deliveries WHERE campaign_id = ? "
        "GROUP BY sender, state",
        (campaign_id,),
    ).fetchall()
    out: dict[str, Counter[str]] = {}
    for sender, state, n in rows:
        out.setdefault(sender, Counter())[state] = n
    return out


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
) -> tuple[list[Claimed], int | None]:
    """The next ``limit`` free queued rows after ``after_seq``, marked ``sending``, held
    by ``sender`` and given a Message-ID (``message_ids()``) unless they have one,
    committed; and the last seq looked at (None: nothing left). Addresses suppressed
    since the snapshot (an unsubscribe during the send) are marked ``suppressed``
    instead. ``results`` of earlier jobs are recorded in the same transaction: one
    commit per batch.

    On a shared ledger, rows another sender's claim has locked at this moment are
    passed over (``FOR UPDATE SKIP LOCKED``): several senders take disjoint batches
    without waiting for each other."""
    with ledger.transaction():
        if results:
            _record(ledger, campaign_id, results, source=source, sender=sender)
        batch = ledger.execute(
            "SELECT seq FROM deliveries WHERE campaign_id = ? AND state = 'queued' "
            "AND sender = '' AND seq > ? ORDER BY seq LIMIT ?" + ledger.skip_locked,
            (campaign_id, after_seq, limit),
        ).fetchall()
        if not batch:
            return [], None
        # Each row is offered a new Message-ID; one it already has (a row queued again) stays.
        values = ", ".join("(?, ?)" for _ in batch)
        rows = ledger.execute(
            f"WITH batch (seq, new_id) AS (VALUES {values}) "
            "UPDATE deliveries SET "
            "state = CASE WHEN address IN (SELECT address FROM suppressions) "
            "THEN 'suppressed' ELSE 'sending' END, "
            "last_reply = CASE WHEN address IN (SELECT address FROM suppressions) "
            "THEN ? ELSE last_reply END, "
            "message_id = CASE WHEN message_id = '' AND address NOT IN "
            "(SELECT address FROM suppressions) THEN batch.new_id ELSE message_id END, "
            "sender = ?, updated_at = ? "
            "FROM batch WHERE deliveries.campaign_id = ? AND deliveries.seq = batch.seq "
            "RETURNING deliveries.seq, address, email, name, attempts, message_id, state",
            (
                *(value for (seq,) in batch for value in (seq, message_ids())),
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


class AlreadyReceived:
    """Whether another campaign of the same edition already has a reader: sent, in
    flight, waiting or failed there, they get (or got) the edition from that campaign.
    Suppressed and invalid rows there do not count. One probe of the deliveries key per
    other campaign; test sends (``edition`` None) are never compared."""

    def __init__(self, ledger: Ledger, campaign_id: str, edition: str | None) -> None:
        self.execute = ledger.execute
        self.others = [
            row[0]
            for row in self.execute(
                "SELECT id FROM campaigns WHERE kind = 'campaign' AND id != ? AND edition = ?",
                (campaign_id, edition),
            )
        ]
        marks = ", ".join("?" * len(self.others))
        self.sql = (
            f"SELECT 1 FROM deliveries WHERE campaign_id IN ({marks}) AND address = ? "
            "AND state NOT IN ('skipped', 'suppressed') LIMIT 1"
        )

    def __call__(self, key: str) -> bool:
        if not self.others:
            return False
        return self.execute(self.sql, (*self.others, key)).fetchone() is not None


# --- finding campaigns -------------------------------------------------------------------
def find_campaign_ids(ledger: Ledger, ref: str | None, *, include_tests: bool) -> list[str]:
    """The campaign named ``ref``, or the campaigns of the edition ``ref``, oldest first;
    with ``ref`` None the most recent campaign. Test sends only with ``include_tests``
    (then every campaign when ``ref`` is None)."""
    params: tuple[str, ...] = (ref, ref) if ref is not None else ()
    if ref is None and include_tests:
        sql = "SELECT id FROM campaigns ORDER BY created_at, id"
    elif ref is None:
        sql = (
            "SELECT id FROM campaigns WHERE kind = 'campaign' "
            "ORDER BY created_at DESC, id DESC LIMIT 1"
        )
    elif include_tests:
        sql = "SELECT id FROM campaigns WHERE id = ? OR edition = ? ORDER BY created_at, id"
    else:
        sql = (
            "SELECT id FROM campaigns WHERE id = ? OR (edition = ? AND kind = 'campaign') "
            "ORDER BY created_at, id"
        )
    return [row[0] for row in ledger.execute(sql, params).fetchall()]


def count_campaigns(ledger: Ledger) -> int:
    """How many campaigns the ledger holds, test sends included."""
    count: int = ledger.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0]
    return count


@dataclass(frozen=True)
class Mailed:
    """A real campaign of an edition that delivered to at least one reader."""

    campaign_id: str
    list_name: str
    content_hash: str
    sent: int


def mailed_campaigns(ledger: Ledger, edition: str) -> list[Mailed]:
    """Campaigns (not test sends) of ``edition`` with a delivery sent or possibly sent."""
    rows = ledger.execute(
        "SELECT c.id, c.list_name, c.content_hash, COUNT(d.address) AS sent"
        " FROM campaigns c JOIN deliveries d ON d.campaign_id = c.id"
        " WHERE c.edition = ? AND c.kind = 'campaign'"
        " AND d.state IN ('sent', 'sending', 'uncertain')"
        " GROUP BY c.id, c.list_name, c.content_hash ORDER BY c.created_at, c.id",
        (edition,),
    ).fetchall()
    return [Mailed(r[0], r[1], r[2], r[3]) for r in rows]


def sent_editions(ledger: Ledger, lists: str | Sequence[str]) -> set[str]:
    """Editions these lists have received: for each list, a campaign of the edition that
    went to it (alone or with other lists) and finished.

    A campaign a scheduled run completed counts too, whatever state the campaign row
    was left in by an earlier, failed run. A campaign that never sent a message (older
    versions recorded an empty list's send as finished) does not count.
    """
    names = {lists} if isinstance(lists, str) else set(lists)
    rows = ledger.execute(
        "SELECT campaigns.edition, campaign_lists.list_name FROM campaigns"
        " JOIN campaign_lists ON campaign_lists.campaign_id = campaigns.id"
        " WHERE campaigns.kind = 'campaign'"
        " AND (campaigns.state = 'finished'"
        " OR campaigns.id IN (SELECT campaign_id FROM schedule_runs WHERE state = 'sent'))"
        " AND EXISTS (SELECT 1 FROM deliveries WHERE campaign_id = campaigns.id"
        " AND message_id != '')"
    )
    covered: dict[str, set[str]] = {}
    for edition, name in rows:
        covered.setdefault(edition, set()).add(name)
    return {edition for edition, got in covered.items() if names <= got}


def sent_message(ledger: Ledger, address: str, message_id: str) -> bool:
    """True if a campaign of this ledger sent ``message_id`` to ``address`` (a key)."""
    if not message_id:
        return False
    # One probe of the (campaign_id, address) index per campaign, not a table scan.
    row = ledger.execute(
        "SELECT 1 FROM deliveries WHERE campaign_id IN (SELECT id FROM campaigns) "
        "AND address = ? AND message_id = ? LIMIT 1",
        (address, message_id),
    ).fetchone()
    return row is not None
