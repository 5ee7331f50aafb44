"""Campaigns and deliveries: every recipient's state, so that a rerun never doubles a send.

A campaign is one edition sent to one or more lists (``campaigns``, ``campaign_lists``);
each of its recipients is one ``deliveries`` row whose ``state`` says where that reader
stands (queued, sending, sent, deferred, failed, suppressed, skipped, uncertain). The
delivery stage decides what happens; this module only reads and writes the rows, so
that the SQL can move to PostgreSQL without touching the sender. This module is the
only place these tables are read or written, but for the send path's statements
(:mod:`~.claims`): functions taking the :class:`Ledger` and, for one campaign's rows,
its id.

The SQL is portable: rows are found by their keys (``(campaign_id, address)`` and the
unique ``(campaign_id, seq)``), never by ``rowid``, with no planner hints and no
functions registered from Python. Message-IDs are made by the caller and handed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from digest_mail.ledger import senders
from digest_mail.ledger.db import Ledger, utcnow

# Rows per INSERT of a snapshot: 8 values each, under the 999 variables an older SQLite allows.
_INSERT_ROWS = 120


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
    updated_at); an address that already has a row keeps it.

    A few hundred rows go in one multi-row INSERT: row by row, the statements were the
    biggest share of a PostgreSQL server's work for a send (bench_postgres.py)."""
    with ledger.transaction():
        for start in range(0, len(rows), _INSERT_ROWS):
            chunk = rows[start : start + _INSERT_ROWS]
            values = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in chunk)
            ledger.execute(
                "INSERT INTO deliveries (campaign_id, seq, address, email, name, state, "
                f"last_reply, updated_at) VALUES {values} "
                "ON CONFLICT (campaign_id, address) DO NOTHING",
                [value for row in chunk for value in row],
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
