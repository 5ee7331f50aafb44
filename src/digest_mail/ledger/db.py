"""The ledger's connection: which database, its transactions, its schema, its locks.

The ledger is the truth of what was sent. It lives in one of two databases, chosen by
``[ledger] url``: the embedded SQLite file (:mod:`~.sqlite`, the default, one host) or a
shared PostgreSQL database (:mod:`~.postgres`, several senders and schedulers on several
hosts). :class:`Ledger` is the same for both: the table modules beside it write their
SQL once, with ``?`` placeholders and portable syntax, and call :meth:`Ledger.execute`;
the rows they get back are read by position or by column name.

This module opens the database, brings its schema up to date
(:mod:`digest_mail.ledger.migrations`) and refuses one migrated by a newer digest-mail.
A SQLite file is upgraded when opened, as it always was; a PostgreSQL database other
hosts share is upgraded only by ``digest-mail ledger migrate`` (an empty one is set up
when first opened), so a host with new code never changes the schema under an old one.

Session locks (:meth:`Ledger.try_lock`) are held until released or until the process
dies: ``flock`` files on SQLite, advisory locks on PostgreSQL. The delivery and schedule
stages use them to tell a live sender from a dead one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from digest_mail.config import (
    POSTGRES_SCHEMES,
    SQLITE_SCHEME,
    Workspace,
    ledger_url_problem,
    read_secret,
)
from digest_mail.errors import ConfigError, LedgerError
from digest_mail.ledger.migrations import MIGRATIONS
from digest_mail.ledger.sqlite import SqliteBackend

if TYPE_CHECKING:
    from digest_mail.ledger.postgres import PostgresBackend

__all__ = [
    "Ledger",
    "LedgerError",
    "connect",
    "ledger_exists",
    "open_ledger",
    "sqlite_path",
    "utcnow",
]

PASSWORD_VARIABLE = "DIGEST_MAIL_LEDGER_PASSWORD"
SCHEMA_VERSION = len(MIGRATIONS)


def utcnow() -> str:
    """Timestamps in the ledger: ISO 8601 UTC with seconds, sortable as text."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Ledger:
    """A connection to the ledger. Use as a context manager or call :meth:`close`.

    ``target`` is a SQLite file's path or a ledger URL (``sqlite:///…``,
    ``postgresql://…``). ``migrate``: bring an older shared schema up to date (only
    ``ledger migrate`` asks); ``base``: what a relative SQLite URL is relative to."""

    def __init__(
        self,
        target: Path | str,
        *,
        timeout: float = 30.0,
        password: str | None = None,
        passfile: Path | None = None,
        base: Path | None = None,
        migrate: bool = False,
    ) -> None:
        self.backend: SqliteBackend | PostgresBackend
        if isinstance(target, Path):
            self.backend = SqliteBackend(target, timeout=timeout)
        elif target.startswith(SQLITE_SCHEME):
            self.backend = SqliteBackend(sqlite_path(target, base=base), timeout=timeout)
        elif target.startswith(POSTGRES_SCHEMES):
            from digest_mail.ledger.postgres import PostgresBackend

            self.backend = PostgresBackend(
                target, password=password, passfile=passfile, timeout=timeout
            )
        else:
            raise LedgerError(f"{target!r} is not a ledger URL")
        backend = self.backend
        self._depth = 0
        # Bound once: the send path calls these a few times a batch.
        self.execute = backend.execute
        self.executemany = backend.executemany
        self.try_lock = backend.try_lock
        self.unlock = backend.unlock
        self.is_locked = backend.is_locked
        #: "sqlite" or "postgresql"
        self.kind = backend.name
        #: Whether several hosts may send one campaign at once (a database server).
        self.shared = backend.shared
        #: Appended to a claim's SELECT: rows another sender holds are passed over.
        self.skip_locked = backend.skip_locked
        #: The same, waiting for rows another sender holds instead of passing them over.
        self.lock_rows = backend.lock_rows
        #: The database as shown to people: a file, or the URL (never a password).
        self.description = backend.description
        #: The schema version found when opened, before any migration ran (0: a new one).
        self.found_version = 0
        try:
            self._check_schema(migrate=migrate)
        except BaseException:
            backend.close()
            raise

    # --- transactions ---------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """BEGIN … COMMIT (ROLLBACK on error). On SQLite the write lock is taken up
        front; on PostgreSQL rows are locked as they are written. A transaction opened
        inside another joins it: all of it commits, or none."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        backend = self.backend
        backend.begin()
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            backend.rollback()
            raise
        else:
            self._depth = 0
            backend.commit()

    # --- the schema -----------------------------------------------------------------
    def schema_version(self) -> int:
        return self.backend.schema_version()

    def _check_schema(self, *, migrate: bool) -> None:
        version = self.found_version = self.backend.schema_version()
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.description}: ledger schema version {version} is newer than this "
                f"digest-mail ({SCHEMA_VERSION})",
                hint="upgrade digest-mail",
            )
        if version == SCHEMA_VERSION:
            return
        # A shared database is upgraded on purpose, with the other hosts stopped: their
        # older code would meet a schema it does not know.
        if self.shared and version > 0 and not migrate:
            raise LedgerError(
                f"{self.description}: ledger schema version {version} is older than this "
                f"digest-mail ({SCHEMA_VERSION})",
                # The URL names this database whichever workspace (or copy) met it.
                hint=(
                    "stop digest-mail on the other hosts, then run "
                    f"'digest-mail ledger migrate {self.description}'"
                ),
            )
        self.migrate()

    def migrate(self) -> tuple[int, int]:
        """Run the migrations this ledger has not run; (version before, version after)."""
        backend = self.backend
        with self.transaction():
            backend.lock_schema()
            # Re-read under the lock: another process may have migrated meanwhile.
            before = backend.schema_version()
            if before > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.description}: ledger schema version {before} is newer than this "
                    f"digest-mail ({SCHEMA_VERSION})",
                    hint="upgrade digest-mail",
                )
            for number, script in enumerate(MIGRATIONS[before:], start=before + 1):
                for statement in _statements(script):
                    backend.execute(statement)
                backend.set_schema_version(number)
        return before, max(before, SCHEMA_VERSION)

    def table_names(self) -> list[str]:
        return sorted(self.backend.table_names())

    def analyze(self, table: str) -> None:
        """Bring the planner's statistics of ``table`` up to date (PostgreSQL)."""
        self.backend.analyze(table)

    # --- the connection ---------------------------------------------------------------
    @contextmanager
    def disconnected(self) -> Iterator[None]:
        """For a fork: SQLite's connection is closed for the block and opened again
        (SQLite must not be carried into a child process); PostgreSQL's stays open, as
        the child never touches it."""
        self.backend.close_for_fork()
        try:
            yield
        finally:
            self.backend.reopen_after_fork()

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_ledger(workspace: Workspace, *, migrate: bool = False, timeout: float = 30.0) -> Ledger:
    """The workspace's ledger (``[ledger] url``), with its password."""
    return connect(
        workspace.ledger_url,
        base=workspace.root,
        passfile=workspace.ledger_passfile,
        migrate=migrate,
        timeout=timeout,
    )


def connect(
    url: str,
    *,
    base: Path | None = None,
    passfile: Path | None = None,
    migrate: bool = False,
    timeout: float = 30.0,
) -> Ledger:
    """A ledger by URL. A PostgreSQL password comes from ``DIGEST_MAIL_LEDGER_PASSWORD``,
    else the owner-only ``passfile`` (.pgpass format), else libpq's own ``PG*``
    variables and ``~/.pgpass``; never from the URL."""
    if problem := ledger_url_problem(url):
        raise ConfigError(problem[0], hint=problem[1])
    password = None
    if url.startswith(POSTGRES_SCHEMES):
        password = read_secret(variable=PASSWORD_VARIABLE, file=None, what="ledger password")
        if passfile is not None:
            # Checked here (owner-only, ours); libpq then picks the matching line.
            read_secret(variable="", file=passfile, what="ledger passfile")
    return Ledger(
        url, base=base, password=password, passfile=passfile, migrate=migrate, timeout=timeout
    )


def sqlite_path(url: str, *, base: Path | None = None) -> Path:
    """The file of a ``sqlite:///…`` URL; a relative one is relative to ``base``."""
    path = Path(url[len(SQLITE_SCHEME) :]).expanduser()
    return path if path.is_absolute() else (base or Path.cwd()) / path


def ledger_exists(workspace: Workspace) -> bool:
    """Whether the workspace has a ledger to read: a shared database always does; a
    SQLite file only once something was written (reading must not create one)."""
    if workspace.ledger_url.startswith(POSTGRES_SCHEMES):
        return True
    return workspace.ledger_path.exists()


def _statements(script: str) -> list[str]:
    # Migrations keep ';' out of their comments, so a plain split is enough.
    return [chunk for chunk in script.split(";") if _has_sql(chunk)]


def _has_sql(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())
