"""The shared ledger: a PostgreSQL database (psycopg 3), for several hosts at once.

PostgreSQL is the distributed engine: row locks (``FOR UPDATE SKIP LOCKED``) let several
senders claim disjoint batches of one campaign, unique keys decide which scheduler gets a
slot, and session-level advisory locks, which the server drops when the holder's
connection ends (its process died, its host went away), say who is alive. Nothing here
coordinates on its own.

What only PostgreSQL understands lives here: the connection (the password comes from
``DIGEST_MAIL_LEDGER_PASSWORD``, an owner-only ``passfile`` or libpq's own ``PG*``
variables, never from the URL), the schema version kept in the ``ledger_schema`` table,
the migration lock, and the translation of the table modules' ``?`` placeholders into
PostgreSQL's ``$1``, ``$2`` ….
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from digest_mail.errors import DigestMailError, LedgerError
from digest_mail.text import CONTROL

# Every migration takes this advisory lock first: two hosts upgrading at once take turns.
_MIGRATION_LOCK = 0x6469676573746D6C  # "digestml"
_SCHEMA_TABLE = "ledger_schema"
# A host that vanishes without closing its connection (power, network) must be noticed
# by the server, which alone drops its advisory locks (a dead sender's, a dead
# scheduler's): the server's keepalives on this session's socket, 30 s idle then 3
# probes 10 s apart, so about a minute, not the system's default of two hours and more.
# Client-side keepalives (libpq's) only tell this end about a dead server. Set per
# session (not by the 'options' startup parameter, which a pooler may refuse); ignored
# on a Unix socket.
_SERVER_KEEPALIVES = (
    "SELECT set_config('tcp_keepalives_idle', '30', false),"
    " set_config('tcp_keepalives_interval', '10', false),"
    " set_config('tcp_keepalives_count', '3', false)"
)


class Row(tuple[Any, ...]):
    """A result row, read by position or by column name (as sqlite3.Row is)."""

    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Any:
    description = cursor.description
    if description is None:
        return tuple
    names = {column.name: index for index, column in enumerate(description)}

    def make(values: Sequence[Any]) -> Row:
        row = Row(values)
        row._names = names
        return row

    return make


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's own ``$1``, ``$2`` …; text inside quotes is
    left alone. The queries go to the server as written (psycopg's raw cursor): psycopg
    parses a ``%s`` query again on every run once it has more than 50 parameters, as a
    claim's and a snapshot batch's have (a tenth of a PostgreSQL send's CPU)."""
    out: list[str] = []
    quote = ""
    number = 0
    for char in sql:
        if quote:
            if char == quote:
                quote = ""
            out.append(char)
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            number += 1
            out.append(f"${number}")
        else:
            out.append(char)
    return "".join(out)


def lock_key(name: str) -> int:
    """A session lock's name as PostgreSQL's 64-bit advisory lock key."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), signed=True)


def _one_line(text: str) -> str:
    first = str(text).strip().splitlines()[0] if str(text).strip() else "unknown error"
    return CONTROL.sub("", first)


class PostgresBackend:
    """One connection (autocommit; :meth:`begin` opens a transaction) to the database."""

    name = "postgresql"
    # Several senders and schedulers on several hosts share one database.
    shared = True
    # The claim's row locks: its deliveries rows, not the suppressions it joins.
    skip_locked = " FOR UPDATE OF deliveries SKIP LOCKED"
    lock_rows = " FOR UPDATE OF deliveries"

    def __init__(
        self,
        url: str,
        *,
        password: str | None,
        passfile: Path | None,
        timeout: float,
    ) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.description = url
        self._password = password
        self._passfile = passfile
        self._timeout = timeout
        self._locks: set[str] = set()
        self.db = self._connect()

    def _connect(self) -> Any:
        psycopg = self._psycopg
        extra: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, int(self._timeout)),
            "application_name": "digest-mail",
            # This end notices a database server that vanished (see _SERVER_KEEPALIVES
            # for the server's side).
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            # No server-side prepared statements: each statement is planned with its own
            # values. psycopg prepares one after 5 runs, and PostgreSQL may then keep a
            # generic plan made while the deliveries table was nearly empty (the snapshot
            # is written as the send starts): a claim that probes 64 rows by index became
            # a scan of the whole campaign, ~50 ms a batch at 20,000 rows
            # (benchmarks/bench_postgres.py). Also what a transaction pooler needs.
            "prepare_threshold": None,
        }
        if self._password is not None:
            extra["password"] = self._password
        if self._passfile is not None:
            extra["passfile"] = str(self._passfile)
        try:
            db = psycopg.connect(
                self.url, row_factory=_row_factory, cursor_factory=psycopg.RawCursor, **extra
            )
        except psycopg.Error as exc:
            raise self.error(exc, "cannot connect to the ledger") from None
        try:
            db.execute(_SERVER_KEEPALIVES)
        except psycopg.Error as exc:
            db.close()
            raise self.error(exc, "cannot connect to the ledger") from None
        return db

    def error(self, exc: BaseException, what: str = "ledger error") -> DigestMailError:
        return LedgerError(
            f"{self.description}: {what}: {_one_line(str(exc))}",
            hint="check the database server, [ledger] url and the ledger's password",
        )

    # --- statements -------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.db.execute(translate(sql), params or None)
        except self._psycopg.Error as exc:
            raise self.error(exc) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        try:
            cursor = self.db.cursor()
            cursor.executemany(translate(sql), list(rows))
        except self._psycopg.Error as exc:
            raise self.error(exc) from None
        return cursor

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.execute("COMMIT")

    def rollback(self) -> None:
        with contextlib.suppress(self._psycopg.Error):
            self.db.execute("ROLLBACK")

    # --- schema -----------------------------------------------------------------
    def schema_version(self) -> int:
        exists = self.execute("SELECT to_regclass(?) IS NOT NULL", (_SCHEMA_TABLE,)).fetchone()[0]
        if not exists:
            return 0
        row = self.execute(f"SELECT MAX(version) FROM {_SCHEMA_TABLE}").fetchone()
        return int(row[0] or 0)

    def lock_schema(self) -> None:
        """Inside the migration's transaction: one host migrates at a time."""
        self.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        self.execute(f"CREATE TABLE IF NOT EXISTS {_SCHEMA_TABLE} (version INTEGER NOT NULL)")

    def set_schema_version(self, version: int) -> None:
        self.execute(f"DELETE FROM {_SCHEMA_TABLE}")
        self.execute(f"INSERT INTO {_SCHEMA_TABLE} (version) VALUES (?)", (version,))

    def analyze(self, table: str) -> None:
        """Fresh planner statistics for ``table``: a table that grew from nothing in the
        last second (a snapshot) is otherwise planned as if it were still empty, and a
        claim of 64 rows by index became a scan of the campaign (bench_postgres.py)."""
        self.execute(f"ANALYZE {table}")

    def table_names(self) -> list[str]:
        rows = self.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename != ?",
            (_SCHEMA_TABLE,),
        )
        return [row[0] for row in rows]

    # --- connection -------------------------------------------------------------
    def close(self) -> None:
        self.db.close()
        self._locks.clear()

    def close_for_fork(self) -> None:
        # The connection stays open across a fork: the child never touches it (it opens
        # its own and leaves with os._exit), and closing it would drop our advisory locks.
        pass

    def reopen_after_fork(self) -> None:
        pass

    # --- session locks: advisory locks the server drops with the connection ---------
    def try_lock(self, name: str, *, wait: bool = False) -> bool:
        if name in self._locks:
            return True
        if wait:
            self.execute("SELECT pg_advisory_lock(?)", (lock_key(name),))
        elif not self.execute("SELECT pg_try_advisory_lock(?)", (lock_key(name),)).fetchone()[0]:
            return False
        self._locks.add(name)
        return True

    def unlock(self, name: str) -> None:
        if name in self._locks:
            self._locks.discard(name)
            self.execute("SELECT pg_advisory_unlock(?)", (lock_key(name),))

    def is_locked(self, name: str) -> bool:
        """Whether some session (this one included) holds ``name`` now."""
        if name in self._locks:
            return True
        # A bigint key is shown as its high (classid) and low (objid) 32 bits.
        row = self.execute(
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND ((classid::bigint << 32) | objid::bigint) = ? AND objsubid = 1",
            (lock_key(name),),
        ).fetchone()
        return row is not None
