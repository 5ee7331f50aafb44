"""The embedded ledger: one SQLite file (stdlib sqlite3, WAL), for one host.

What only SQLite understands lives here and is named so: the pragmas, the schema version
kept in ``PRAGMA user_version``, ``BEGIN IMMEDIATE`` (the write lock taken up front, so
two writers never deadlock upgrading a read lock) and the session locks, which are
``flock`` locks on files beside the ledger (the kernel drops them when their process
dies). :class:`~.db.Ledger` speaks to it through the same methods as to
:mod:`~.postgres`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from digest_mail.errors import DigestMailError, LedgerError

# WAL lets readers (status, the unsubscribe server) read beside a send.
_SQLITE_PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
_SQLITE_SCHEMA_VERSION = "PRAGMA user_version"
_SQLITE_BEGIN = "BEGIN IMMEDIATE"


class SqliteBackend:
    """One connection to a ledger file. Statements use ``?`` placeholders."""

    name = "sqlite"
    # Several senders of one campaign need a server: one file has one writer at a time.
    shared = False
    # SQLite has no row locks: BEGIN IMMEDIATE already serializes every writer.
    skip_locked = ""
    lock_rows = ""

    def __init__(self, path: Path, *, timeout: float) -> None:
        self.path = path
        self.description = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Addresses and names are personal data: a new ledger is owner-only, and SQLite
        # gives its -wal and -shm files the same mode.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._timeout = timeout
        self._locks: dict[str, IO[str]] = {}
        self.db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
            db.row_factory = sqlite3.Row
            for pragma in _SQLITE_PRAGMAS:
                db.execute(f"PRAGMA {pragma}")
        except sqlite3.Error as exc:
            raise self.error(exc, "cannot open the ledger") from None
        return db

    def error(self, exc: BaseException, what: str = "ledger error") -> DigestMailError:
        """A database error as one line for the user (no traceback), never overwriting."""
        return LedgerError(
            f"{self.description}: {what}: {exc}",
            hint=f"if {self.path.name} is damaged, restore it from a backup",
        )

    # --- statements -------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.db.execute(sql, params)
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        try:
            return self.db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self.error(exc) from None

    def begin(self) -> None:
        self.execute(_SQLITE_BEGIN)

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("ROLLBACK")

    # --- schema -----------------------------------------------------------------
    def schema_version(self) -> int:
        version: int = self.execute(_SQLITE_SCHEMA_VERSION).fetchone()[0]
        return version

    def lock_schema(self) -> None:
        """Inside the migration's transaction: BEGIN IMMEDIATE already holds the file."""

    def set_schema_version(self, version: int) -> None:
        self.execute(f"{_SQLITE_SCHEMA_VERSION} = {int(version)}")

    def analyze(self, table: str) -> None:
        """SQLite's planner does well without statistics on these indexes."""

    def table_names(self) -> list[str]:
        rows = self.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        return [row[0] for row in rows]

    # --- connection -------------------------------------------------------------
    def close(self) -> None:
        self.db.close()
        for handle in self._locks.values():
            handle.close()
        self._locks.clear()

    def close_for_fork(self) -> None:
        # SQLite must not be carried into a child process, not even as the bookkeeping
        # of an idle connection (the child's own connection would share it and skip
        # locks it believes held). The session locks stay: a forked child holds them too.
        self.db.close()

    def reopen_after_fork(self) -> None:
        self.db = self._connect()

    # --- session locks: files the kernel unlocks when their process dies ------------
    def _lock_file(self, name: str) -> Path:
        return self.path.parent / "locks" / (re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".lock")

    def try_lock(self, name: str, *, wait: bool = False) -> bool:
        if name in self._locks:
            return True
        path = self._lock_file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = open(path, "a+", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        self._locks[name] = handle
        return True

    def unlock(self, name: str) -> None:
        handle = self._locks.pop(name, None)
        if handle is not None:
            handle.close()

    def is_locked(self, name: str) -> bool:
        """Whether some process (this one included) holds ``name`` now."""
        if name in self._locks:
            return True
        try:
            handle = open(self._lock_file(name), encoding="utf-8")  # noqa: SIM115
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False
