"""The ledger: one SQLite file that is the truth of what was sent.

Campaigns, every delivery's state, suppressions, approvals and schedule runs live here
(stdlib sqlite3, WAL). The SQL stays portable (no SQLite-only functions in queries) so
that PostgreSQL can serve the same role when several senders share one ledger.

Schema changes are migrations: append a new script to ``MIGRATIONS``; never edit one
that has been committed. ``PRAGMA user_version`` records how many have run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

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
]


class LedgerError(DigestMailError):
    """The ledger file cannot be opened or is newer than this program."""


def utcnow() -> str:
    """Timestamps in the ledger: ISO 8601 UTC with seconds, sortable as text."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Ledger:
    """A connection to the ledger. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path, *, timeout: float = 30.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"{path}: cannot open the ledger: {exc}") from None
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

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
