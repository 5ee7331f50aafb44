"""A real PostgreSQL of the test suite's own: a cluster made by ``initdb`` in a temporary
folder, TCP on 127.0.0.1 only, password authentication, deleted at the end.

Issue 18 puts the ledger in PostgreSQL and lets several senders share one campaign through
``FOR UPDATE SKIP LOCKED``: that is the database's own locking, which no fake and no SQLite
can stand in for, so the tests run against the real server, as they run against a real
Postfix (tests/postfix.py). ``PostgresServer().start()`` makes the cluster from Debian's
``postgresql`` binaries (``/usr/lib/postgresql/<version>/bin``, the newest installed) and
``pg_ctl start -w``; ``stop()`` runs ``pg_ctl stop -m fast`` and removes the folder. It is
also a context manager, for a benchmark that wants a server of its own.

- Nothing shared: data, log and the Unix socket live in the temporary folder; TCP listens
  on ``127.0.0.1`` and a free port, and ``pg_hba.conf`` admits only that and the private
  socket. The system's own cluster (``/etc/postgresql``, port 5432) is never used.
- Not as root: PostgreSQL refuses to run as root, and CI runs the suite as root. Then
  ``initdb``, ``pg_ctl`` and the server run as the ``postgres`` user the Debian package
  creates (``nobody`` if it is missing), the folder chowned to it. Otherwise as the
  current user.
- Passwords as in production (``scram-sha-256``), never on a command line: ``initdb``
  reads the superuser's from a file it deletes at once; the application role's verifier
  is computed by the client (``PQencryptPasswordConn``), so the server's log never sees
  it either. ``url`` carries no password; ``password`` and ``env()`` (``PG*`` variables,
  ``PGPASSWORD`` included) hand it over.
- Two roles: the bootstrap superuser ``postgres`` (only :meth:`create_database` uses it)
  and ``digest_mail``, a plain login role that owns each test's database, as an
  operator's database would be owned (no superuser, PostgreSQL 15's ``public`` schema
  rules).
- One database per test (:meth:`create_database`, ``CREATE DATABASE … TEMPLATE
  template0``; ``drop_database`` forcibly ends what is still connected), so tests share
  no state. UTF-8 and the ``C`` locale: Japanese text round-trips, sorting is by code
  point on every machine.
- Fast and not durable: ``fsync``, ``synchronous_commit`` and ``full_page_writes`` are
  off, since the cluster dies with the session. Tests kill senders, never this server;
  a test about the server's own crash would need them on.

A pytest process killed with SIGKILL leaves the server running (as the Postfix instance);
``pg_ctl -D <folder>/data stop`` ends it.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

PG_ROOT = Path("/usr/lib/postgresql")
APP_ROLE = "digest_mail"
SUPERUSER = "postgres"
HOST = "127.0.0.1"


def bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb, or None."""
    found = [p.parent for p in PG_ROOT.glob("*/bin/initdb") if p.parent.parent.name.isdigit()]
    return max(found, key=lambda p: int(p.parent.name), default=None)


def server_user() -> str | None:
    """Who runs the server: None for the current user; when root, an unprivileged user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    return None


def unavailable() -> str | None:
    """Why a private PostgreSQL cannot run here, or None."""
    if bindir() is None:
        return (
            f"PostgreSQL is not installed (no {PG_ROOT}/<version>/bin/initdb; "
            "make system-deps installs Debian's postgresql)"
        )
    if os.geteuid() == 0 and server_user() is None:
        return "running as root and no 'postgres' or 'nobody' user to run PostgreSQL as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (the [dev] extra installs it: make test)"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _quote(value: str) -> str:
    """A postgresql.conf string value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True)
class Database:
    """One test's database: connect with ``psycopg.connect(db.url, password=db.password)``
    or hand ``db.env()`` to a child process."""

    name: str
    port: int
    password: str
    user: str = APP_ROLE
    host: str = HOST

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.name}"

    def env(self) -> dict[str, str]:
        """libpq's variables for this database, the password included."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.name,
            "PGPASSWORD": self.password,
            "PGSSLMODE": "disable",
        }

    def __repr__(self) -> str:  # never the password, even in a failing test's output
        return f"Database({self.url!r})"


class PostgresServer:
    def __init__(self) -> None:
        bin_ = bindir()
        assert bin_ is not None, unavailable()
        self.bin = bin_
        self.user = server_user()
        self._root: Path | None = None  # the temporary folder, from start() to stop()
        self.port = 0
        self.password = secrets.token_urlsafe(24)
        self._superuser_password = secrets.token_urlsafe(24)
        self._admin: psycopg.Connection[Any] | None = None
        self._names = itertools.count(1)

    # -- where things are --------------------------------------------------------------

    @property
    def root(self) -> Path:
        assert self._root is not None, "the server is not started"
        return self._root

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        """The maintenance database ``postgres`` as the application role (no password)."""
        return self.database("postgres").url

    def env(self) -> dict[str, str]:
        return self.database("postgres").env()

    def database(self, name: str) -> Database:
        return Database(name=name, port=self.port, password=self.password)

    def log(self) -> str:
        try:
            return self.logfile.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text(encoding="ascii").split()[0])

    # -- running -----------------------------------------------------------------------

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # No PG* variable of the developer's reaches initdb/pg_ctl; cwd is a folder the
        # server's user can enter (not /root).
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        done = subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=self.root,
            env=env,
            user=self.user,
            group=None if self.user is None else pwd.getpwnam(self.user).pw_gid,
            extra_groups=None if self.user is None else [],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {done.stdout}{done.stderr}{self.log()}")
        return done

    def _own(self, path: Path) -> None:
        if self.user is not None:
            shutil.chown(path, self.user, pwd.getpwnam(self.user).pw_gid)

    def _configure(self) -> None:
        """Write the suite's settings (``suite.conf``, included last, so they win)."""
        settings = {
            "listen_addresses": HOST,
            "port": self.port,
            "unix_socket_directories": self.socket_dir,
            "password_encryption": "scram-sha-256",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "32MB",
            "log_checkpoints": "off",
        }
        (self.data / "suite.conf").write_text(
            "".join(f"{key} = {_quote(str(value))}\n" for key, value in settings.items()),
            encoding="utf-8",
        )
        (self.data / "pg_hba.conf").write_text(
            "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
            "local   all       all                 scram-sha-256\n"
            f"host    all       all   {HOST}/32  scram-sha-256\n",
            encoding="utf-8",
        )

    def start(self) -> PostgresServer:
        try:
            return self._start()
        except BaseException:
            self.stop()  # a half-started server is ended and its folder removed
            raise

    def _start(self) -> PostgresServer:
        # Not under pytest's owner-only temporary folder: the server's user must enter it.
        self._root = Path(tempfile.mkdtemp(prefix="digest-mail-postgres-"))
        self._own(self.root)
        self.socket_dir.mkdir(mode=0o700)
        self._own(self.socket_dir)
        pwfile = self.root / "pwfile"
        pwfile.touch(mode=0o600)
        pwfile.write_text(self._superuser_password + "\n", encoding="utf-8")
        self._own(pwfile)
        try:
            self._run(
                *("initdb", "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}"),
                *("--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"),
            )
        finally:
            pwfile.unlink()
        with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# The test suite's own server (tests/pgserver.py)\ninclude 'suite.conf'\n"
            )
        # Another process may take the free port before the server binds it: try anew.
        for attempt in range(3):
            self.port = _free_port()
            self._configure()
            started = self._run(
                *("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data)),
                *("-l", str(self.logfile)),
                check=False,
            )
            if started.returncode == 0:
                break
            if attempt == 2 or "could not bind" not in self.log():
                raise RuntimeError(f"pg_ctl start: {started.stdout}{started.stderr}{self.log()}")
        admin = self._admin_connection()
        verifier = admin.pgconn.encrypt_password(
            self.password.encode(), APP_ROLE.encode(), b"scram-sha-256"
        )
        from psycopg import sql

        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(APP_ROLE), sql.Literal(verifier.decode())
            )
        )
        return self

    def _admin_connection(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(
                host=HOST,
                port=self.port,
                user=SUPERUSER,
                dbname="postgres",
                password=self._superuser_password,
                sslmode="disable",
                autocommit=True,
                connect_timeout=10,
            )
        return self._admin

    def create_database(self, name: str | None = None) -> Database:
        """A new, empty database owned by the application role."""
        from psycopg import sql

        name = name or f"test_{os.getpid()}_{next(self._names)}"
        assert re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name), name
        self._admin_connection().execute(
            sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                sql.Identifier(name), sql.Identifier(APP_ROLE)
            )
        )
        return self.database(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending its sessions (a killed sender's included) first."""
        from psycopg import sql

        self._admin_connection().execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self._root is None:
            return
        try:
            # Also after a failed start: pg_ctl may give up waiting on a server that
            # then comes up.
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-m", "fast", "-w", "-D", str(self.data))
        finally:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PostgresServer({self.url!r})"
