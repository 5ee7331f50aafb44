"""The ledger's connection: opening the SQLite file, its pragmas, transactions and schema.

The ledger is one SQLite file that is the truth of what was sent (stdlib sqlite3, WAL).
This module opens it, brings its schema up to date (:mod:`digest_mail.ledger.migrations`)
and refuses a file migrated by a newer digest-mail; the tables are read and written by
the table modules beside it, never here.

What only SQLite understands is named so (``_SQLITE_*``): the pragmas, the schema
version kept in ``PRAGMA user_version`` and ``BEGIN IMMEDIATE``. A PostgreSQL ledger
replaces exactly these; the table modules' SQL stays as it is.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from digest_mail.errors import DigestMailError
from digest_mail.ledger.migrations import MIGRATIONS

# WAL lets readers (status, the unsubscribe server) read beside a send.
_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
_SQLITE_SCHEMA_VERSION = "PRAGMA user_version"
# The write lock is taken up front, so two writers never deadlock upgrading a read lock.
_SQLITE_BEGIN = "BEGIN IMMEDIATE"


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
            for pragma in _SQLITE_PRAGMAS:
                db.execute(f"PRAGMA {pragma}")
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
        version = self.db.execute(_SQLITE_SCHEMA_VERSION).fetchone()[0]
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
            version = self.db.execute(_SQLITE_SCHEMA_VERSION).fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    self.db.execute(statement)
                self.db.execute(f"{_SQLITE_SCHEMA_VERSION} = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error): a write lock taken up front."""
        self.db.execute(_SQLITE_BEGIN)
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
