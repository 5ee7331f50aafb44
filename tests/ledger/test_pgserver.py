"""The suite's own PostgreSQL (tests/pgserver.py), which issue 18's ledger will be tested
against: a real server on loopback that wants a password, not running as root, a fresh
database per test, and the row locking (``FOR UPDATE SKIP LOCKED``) by which several
senders will share one campaign."""

from __future__ import annotations

import os
import pwd
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from pgserver import Database, PostgresServer

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (the [dev] extra)")

pytestmark = pytest.mark.postgres

USER_TABLES = (
    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
)


def connect(db: Database, password: str | None = None, **options: object) -> psycopg.Connection:
    return psycopg.connect(
        db.url,
        password=db.password if password is None else password,
        connect_timeout=10,
        **options,
    )


def test_it_answers_over_tcp_on_loopback_with_the_password(
    postgres_server: PostgresServer, postgres_db: Database
) -> None:
    url = urlsplit(postgres_db.url)
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "127.0.0.1", postgres_server.port)
    assert (url.username, url.password, url.path) == ("digest_mail", None, f"/{postgres_db.name}")
    with connect(postgres_db) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), host(inet_server_addr()),"
            " current_setting('listen_addresses'), current_setting('password_encryption'),"
            " current_setting('server_encoding'),"
            " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
        ).fetchone()
        text = conn.execute("SELECT %s::text", ("菊花ダイジェスト 第12号 ✅",)).fetchone()
    # inet_server_addr() is NULL over a Unix socket: this is TCP. A plain role, as an
    # operator's database would give, not the superuser.
    assert row == (
        "digest_mail",
        postgres_db.name,
        "127.0.0.1",
        "127.0.0.1",
        "scram-sha-256",
        "UTF8",
        False,
    )
    assert text == ("菊花ダイジェスト 第12号 ✅",)
    # Its Unix socket is in its own folder, not in a shared /var/run/postgresql.
    assert list((postgres_server.root / "socket").glob(".s.PGSQL.*"))


def test_a_wrong_or_missing_password_is_refused(
    postgres_db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(postgres_db, password="not-" + postgres_db.password)
    # No password from anywhere libpq looks (PGPASSWORD, ~/.pgpass): refused too.
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(postgres_db.url, connect_timeout=10)


def test_the_passwords_are_on_no_command_line_nor_in_the_log(
    postgres_server: PostgresServer, postgres_db: Database
) -> None:
    with connect(postgres_db) as conn:
        conn.execute("SELECT 1")
    secrets = [postgres_db.password.encode(), postgres_server._superuser_password.encode()]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes()
        except OSError:  # a process that ended meanwhile
            continue
        assert not any(secret in argv for secret in secrets), cmdline
    log = postgres_server.log()
    assert "ready to accept connections" in log
    assert not any(secret.decode() in log for secret in secrets)
    assert not (postgres_server.root / "pwfile").exists()
    assert postgres_db.password not in repr(postgres_db) + postgres_db.url


def test_the_server_runs_as_an_unprivileged_user(postgres_server: PostgresServer) -> None:
    if os.geteuid() == 0:  # CI: the server is someone else (tests/pgserver.py)
        assert postgres_server.user is not None
        expected = pwd.getpwnam(postgres_server.user).pw_uid
        assert expected != 0
    else:
        expected = os.getuid()
    status = Path(f"/proc/{postgres_server.postmaster_pid()}/status").read_text(encoding="ascii")
    uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
    assert uids == [str(expected)] * 4  # real, effective, saved, filesystem
    data = (
        postgres_server._admin_connection()
        .execute("SELECT current_setting('data_directory')")
        .fetchone()
    )
    assert data == (str(postgres_server.data),)
    assert os.stat(postgres_server.data).st_uid == expected


@pytest.mark.parametrize("turn", ["first", "second"])
def test_each_database_starts_empty_and_alone(
    postgres_server: PostgresServer, postgres_db: Database, turn: str
) -> None:
    # Whichever turn runs second finds no trace of the other's table.
    with connect(postgres_db) as conn:
        assert conn.execute(USER_TABLES).fetchone() == (0,)
        # The role owns its database: it creates in ``public`` (PostgreSQL 15's rules).
        conn.execute("CREATE TABLE marker (turn text PRIMARY KEY)")
        conn.execute("INSERT INTO marker VALUES (%s)", (turn,))
    other = postgres_server.create_database()
    try:
        assert other.name != postgres_db.name
        with connect(other) as conn:
            assert conn.execute(USER_TABLES).fetchone() == (0,)
            conn.execute("CREATE TABLE marker (turn text PRIMARY KEY)")
            assert conn.execute("SELECT count(*) FROM marker").fetchone() == (0,)
    finally:
        postgres_server.drop_database(other.name)


CLAIM = (
    "SELECT id FROM deliveries WHERE claimed_by IS NULL ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
)


def _deliveries(db: Database, count: int) -> None:
    with connect(db) as conn:
        conn.execute("CREATE TABLE deliveries (id integer PRIMARY KEY, claimed_by text)")
        conn.execute("INSERT INTO deliveries SELECT generate_series(1, %s)", (count,))


def test_skip_locked_gives_two_transactions_disjoint_rows(postgres_db: Database) -> None:
    _deliveries(postgres_db, 10)
    # A lock wait would be a bug here: fail in seconds rather than hang.
    options = {"options": "-c lock_timeout=5s"}
    with (
        connect(postgres_db, **options) as a,
        connect(postgres_db, **options) as b,
        connect(postgres_db, **options) as c,
    ):
        first = [id_ for (id_,) in a.execute(CLAIM, (4,))]
        second = [id_ for (id_,) in b.execute(CLAIM, (4,))]
        assert (first, second) == ([1, 2, 3, 4], [5, 6, 7, 8])
        # The rows are really locked: without SKIP LOCKED another transaction waits.
        with pytest.raises(psycopg.errors.LockNotAvailable):
            c.execute("SELECT id FROM deliveries WHERE id = 1 FOR UPDATE NOWAIT")
        c.rollback()
        a.execute("UPDATE deliveries SET claimed_by = 'a' WHERE id = ANY(%s)", (first,))
        a.commit()
        # A sender that dies with its batch claimed: once the server has seen its
        # session end (in its own time: a closed socket is noticed, not announced), the
        # batch is free again, the other batches untouched.
        assert [id_ for (id_,) in c.execute(CLAIM, (4,))] == [9, 10]
        backend = c.info.backend_pid
        c.close()
        deadline = time.monotonic() + 30
        while a.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone():
            a.rollback()
            assert time.monotonic() < deadline, "the closed session never ended"
            time.sleep(0.01)  # polling a real server
        assert [id_ for (id_,) in a.execute(CLAIM, (4,))] == [9, 10]
        b.execute("UPDATE deliveries SET claimed_by = 'b' WHERE id = ANY(%s)", (second,))
        b.commit()
        a.commit()
        counts = a.execute(
            "SELECT claimed_by, count(*) FROM deliveries GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert counts == [("a", 4), ("b", 4), (None, 2)]


def test_concurrent_claimers_take_every_row_exactly_once(postgres_db: Database) -> None:
    """Two threads, each its own connection, claim batches until none is left, as two
    senders on one campaign will: every row once, both have worked."""
    _deliveries(postgres_db, 300)
    first_batch = {name: threading.Event() for name in ("a", "b")}
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        try:
            with connect(postgres_db, options="-c lock_timeout=10s") as conn:
                while True:
                    batch = [id_ for (id_,) in conn.execute(CLAIM, (7,))]
                    if not first_batch[name].is_set():
                        # Both hold a first batch at once before going on: the two
                        # transactions really overlap, whatever the scheduler does.
                        first_batch[name].set()
                        assert all(event.wait(30) for event in first_batch.values())
                    if not batch:
                        conn.commit()
                        return
                    conn.execute(
                        "UPDATE deliveries SET claimed_by = %s WHERE id = ANY(%s)", (name, batch)
                    )
                    conn.commit()
                    claimed[name].extend(batch)
        except BaseException as error:  # reported by the test below
            errors.append(error)
            for event in first_batch.values():
                event.set()

    threads = [threading.Thread(target=claimer, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    assert set(claimed["a"]).isdisjoint(claimed["b"])
    assert sorted(claimed["a"] + claimed["b"]) == list(range(1, 301))
    assert claimed["a"] and claimed["b"]
    with connect(postgres_db) as conn:
        rows = conn.execute(
            "SELECT claimed_by, count(*) FROM deliveries GROUP BY 1 ORDER BY 1"
        ).fetchall()
    assert rows == [("a", len(claimed["a"])), ("b", len(claimed["b"]))]


def test_env_hands_the_database_to_a_child_process(
    postgres_server: PostgresServer, postgres_db: Database
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(postgres_db.env(), PGPASSFILE=os.devnull)
    query = "SELECT current_database(), current_user, host(inet_server_addr())"
    done = subprocess.run(
        [str(postgres_server.bin / "psql"), "-X", "-A", "-t", "-c", query],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip() == f"{postgres_db.name}|digest_mail|127.0.0.1"
