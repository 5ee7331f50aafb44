"""The ledger: one SQLite file that is the truth of what was sent.

Campaigns, every delivery's state, suppressions, approvals and schedule runs live here
(stdlib sqlite3, WAL). The SQL stays portable (no SQLite-only functions in queries) so
that PostgreSQL can serve the same role when several senders share one ledger.

Schema changes are migrations: append a new script to ``MIGRATIONS``; never edit one
that has been committed. ``PRAGMA user_version`` records how many have run.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from digest_mail.audience.addresses import address_key
from digest_mail.errors import DigestMailError

MIGRATIONS: list[str] = [
    # 1: suppressions — who must never receive mail again.
    """
    CREATE TABLE suppressions (
        address     TEXT PRIMARY KEY,          -- normalized (casefolded) address
        reason      TEXT NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complained', 'manual')),
        source      TEXT NOT NULL DEFAULT '',  -- list name, bounce file, 'cli', 'one-click' …
        detail      TEXT NOT NULL DEFAULT '',  -- e.g. the SMTP reply or DSN status
        created_at  TEXT NOT NULL              -- ISO 8601 UTC
    );
    """,
    # 2: approvals and schedule runs: what may go out, and which weekly slot already went.
    """
    CREATE TABLE approvals (
        edition       TEXT PRIMARY KEY,        -- draft id, e.g. 2026-W48
        content_hash  TEXT NOT NULL,           -- Draft.content_hash when approved
        approved_at   TEXT NOT NULL,           -- ISO 8601 UTC
        approved_by   TEXT NOT NULL DEFAULT '',
        withdrawn_at  TEXT                     -- set by approve --withdraw
    );
    CREATE TABLE schedule_runs (
        schedule     TEXT NOT NULL,            -- [[schedule]] name
        slot         TEXT NOT NULL,            -- the cron slot, ISO 8601 UTC
        state        TEXT NOT NULL CHECK (state IN ('claimed', 'sending', 'sent', 'skipped', 'failed')),
        edition      TEXT,
        campaign_id  TEXT,
        claimed_at   TEXT NOT NULL,
        finished_at  TEXT,
        note         TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (schedule, slot)           -- the claim: one row per slot, ever
    );
    """,
    # 3: soft bounces (4.x.x): an address is suppressed after 3 within 30 days.
    """
    CREATE TABLE soft_bounces (
        address     TEXT NOT NULL,             -- normalized (casefolded) address
        message_id  TEXT NOT NULL,             -- the report's Message-ID: a re-import counts once
        status      TEXT NOT NULL,             -- DSN status, e.g. 4.2.2
        detail      TEXT NOT NULL DEFAULT '',  -- Diagnostic-Code
        source      TEXT NOT NULL DEFAULT '',  -- the mbox or Maildir it came from
        bounced_at  TEXT NOT NULL,             -- ISO 8601 UTC, from the report's Date
        PRIMARY KEY (address, message_id)
    );
    CREATE INDEX soft_bounces_by_time ON soft_bounces (address, bounced_at);
    """,
    # 4: campaigns and deliveries — every recipient's state, so a rerun never doubles.
    """
    CREATE TABLE campaigns (
        id               TEXT PRIMARY KEY,     -- '2026-W48/weekly', tests '2026-W48/test/<stamp>'
        edition          TEXT NOT NULL,
        list_name        TEXT NOT NULL,
        kind             TEXT NOT NULL CHECK (kind IN ('campaign', 'test')),
        content_hash     TEXT NOT NULL,
        state            TEXT NOT NULL CHECK (state IN ('snapshotting', 'sending', 'stopped', 'finished')),
        total            INTEGER NOT NULL DEFAULT 0,
        skipped_invalid  INTEGER NOT NULL DEFAULT 0,
        note             TEXT NOT NULL DEFAULT '',  -- why the last run stopped
        created_at       TEXT NOT NULL,
        started_at       TEXT,
        finished_at      TEXT
    );
    CREATE INDEX campaigns_by_edition ON campaigns (edition, list_name, created_at);
    CREATE TABLE deliveries (
        campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
        seq          INTEGER NOT NULL,         -- row order in the snapshot, the queue order
        address      TEXT NOT NULL,            -- normalized (casefolded) key
        email        TEXT NOT NULL,            -- as written in the list
        name         TEXT NOT NULL DEFAULT '',
        state        TEXT NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed',
                                                     'suppressed', 'skipped', 'uncertain')),
        uncertain    INTEGER NOT NULL DEFAULT 0,  -- 1 once found in flight after a crash
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_code    INTEGER,
        last_reply   TEXT NOT NULL DEFAULT '',
        message_id   TEXT NOT NULL DEFAULT '',
        updated_at   TEXT NOT NULL,
        PRIMARY KEY (campaign_id, address)
    );
    CREATE UNIQUE INDEX deliveries_by_seq ON deliveries (campaign_id, seq);
    CREATE INDEX deliveries_by_state ON deliveries (campaign_id, state, seq);
    """,
    # 5: the send path claims rows in seq order (deliveries_by_seq) and updates them by
    # rowid; a (campaign, state, seq) index cost two index updates per state change,
    # twice a message. Queries by state scan one campaign's rows, once a run.
    """
    DROP INDEX deliveries_by_state;
    """,
    # 6: one campaign may go to several lists, each address once: the lists of each
    # campaign (a campaign made before this had one, its list_name), and how many readers
    # a campaign left out because another campaign of its edition already had them.
    """
    CREATE TABLE campaign_lists (
        campaign_id  TEXT NOT NULL REFERENCES campaigns (id),
        list_name    TEXT NOT NULL,
        PRIMARY KEY (campaign_id, list_name)
    );
    CREATE INDEX campaign_lists_by_list ON campaign_lists (list_name);
    INSERT INTO campaign_lists (campaign_id, list_name) SELECT id, list_name FROM campaigns;
    ALTER TABLE campaigns ADD COLUMN already_received INTEGER NOT NULL DEFAULT 0;
    """,
]


class LedgerError(DigestMailError):
    """The ledger file cannot be opened or is newer than this program."""


SUPPRESSION_REASONS = ("unsubscribed", "bounced", "complained", "manual")


@dataclass(frozen=True)
class Suppression:
    """One address that must never receive mail again, and why."""

    address: str
    reason: str
    source: str
    detail: str
    created_at: str


def utcnow() -> str:
    """Timestamps in the ledger: ISO 8601 UTC with seconds, sortable as text."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Ledger:
    """A connection to the ledger. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Addresses and names are personal data: a new ledger is owner-only, and SQLite
        # gives its -wal and -shm files the same mode.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._timeout = timeout
        self.db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        try:
            db = sqlite3.connect(path, timeout=self._timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"{path}: cannot open the ledger: {exc}") from None
        db.row_factory = sqlite3.Row
        self.db = db
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            # A damaged or foreign file: one line, never a traceback, never overwritten.
            db.close()
            raise LedgerError(
                f"{path}: cannot open the ledger: {exc}",
                hint=f"if {path.name} is damaged, restore it from a backup",
            ) from None
        return db

    @contextmanager
    def disconnected(self) -> Iterator[None]:
        """Close the connection for the block, then open a new one (``db`` changes).

        For a fork: SQLite must not be carried into a child process, not even as the
        bookkeeping of an idle connection (the child's own connection would share it and
        skip locks it believes held). With none open, the child starts clean."""
        self.db.close()
        try:
            yield
        finally:
            self.db = self._connect()

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise LedgerError(
                f"{self.path}: ledger schema version {version} is newer than this digest-mail "
                f"({len(MIGRATIONS)})",
                hint="upgrade digest-mail",
            )
        if version == len(MIGRATIONS):
            return
        with self.transaction():
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): a write lock taken up front."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    # --- suppressions: who must never receive mail again ---------------------------

    def suppress(
        self, address: str, *, reason: str, source: str, detail: str = "", at: str | None = None
    ) -> bool:
        """Suppress ``address``; True if it was not suppressed before (the first reason stays)."""
        if reason not in SUPPRESSION_REASONS:
            raise LedgerError(
                f"{reason!r} is not a suppression reason ({', '.join(SUPPRESSION_REASONS)})"
            )
        cursor = self.db.execute(
            "INSERT INTO suppressions (address, reason, source, detail, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (address) DO NOTHING",
            (address_key(address), reason, source, detail, at or utcnow()),
        )
        return cursor.rowcount == 1

    def is_suppressed(self, address: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM suppressions WHERE address = ?", (address_key(address),)
        ).fetchone()
        return row is not None

    def suppression(self, address: str) -> Suppression | None:
        row = self.db.execute(
            "SELECT address, reason, source, detail, created_at FROM suppressions "
            "WHERE address = ?",
            (address_key(address),),
        ).fetchone()
        return Suppression(*row) if row else None

    def unsuppress(self, address: str) -> bool:
        """Lift a suppression; True if there was one. Soft-bounce history goes with it."""
        key = address_key(address)
        with self.transaction():
            cursor = self.db.execute("DELETE FROM suppressions WHERE address = ?", (key,))
            self.db.execute("DELETE FROM soft_bounces WHERE address = ?", (key,))
        return cursor.rowcount == 1

    def suppressions(self, *, reason: str | None = None) -> list[Suppression]:
        """Every suppression, oldest first (optionally of one reason)."""
        sql = "SELECT address, reason, source, detail, created_at FROM suppressions"
        params: tuple[str, ...] = ()
        if reason is not None:
            sql += " WHERE reason = ?"
            params = (reason,)
        rows = self.db.execute(sql + " ORDER BY created_at, address", params).fetchall()
        return [Suppression(*row) for row in rows]

    def record_soft_bounce(
        self, address: str, *, message_id: str, status: str, detail: str, source: str, at: str
    ) -> bool:
        """Remember one soft bounce of the message ``message_id`` (the one we sent);
        False if a soft bounce of that message was recorded before."""
        cursor = self.db.execute(
            "INSERT INTO soft_bounces (address, message_id, status, detail, source, bounced_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (address, message_id) DO NOTHING",
            (address_key(address), message_id, status, detail, source, at),
        )
        return cursor.rowcount == 1

    def soft_bounce_times(self, address: str) -> list[str]:
        """When each recorded soft bounce of ``address`` happened (ISO 8601 UTC)."""
        rows = self.db.execute(
            "SELECT bounced_at FROM soft_bounces WHERE address = ?", (address_key(address),)
        ).fetchall()
        return [str(row[0]) for row in rows]

    def sent_message(self, address: str, message_id: str) -> bool:
        """True if a campaign of this ledger sent ``message_id`` to ``address`` (a key)."""
        if not message_id:
            return False
        # One probe of the (campaign_id, address) index per campaign, not a table scan.
        row = self.db.execute(
            "SELECT 1 FROM deliveries WHERE campaign_id IN (SELECT id FROM campaigns) "
            "AND address = ? AND message_id = ? LIMIT 1",
            (address, message_id),
        ).fetchone()
        return row is not None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _statements(script: str) -> list[str]:
    # Migrations keep ';' out of their comments, so a plain split is enough.
    return [chunk for chunk in script.split(";") if _has_sql(chunk)]


def _has_sql(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())
