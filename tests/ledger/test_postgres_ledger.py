"""The ledger on PostgreSQL (issue 18): the same Ledger, its schema made by the same
migrations, its password never in the URL, and a clear refusal when the schema is older
or newer than the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_mail.errors import ConfigError
from digest_mail.ledger import campaigns, suppressions
from digest_mail.ledger.db import SCHEMA_VERSION, Ledger, LedgerError, connect
from pgserver import Database

pytest.importorskip("psycopg", reason="psycopg is not installed (the [dev] extra)")
pytestmark = pytest.mark.postgres

TABLES = [
    "approvals",
    "campaign_lists",
    "campaigns",
    "deliveries",
    "schedule_runs",
    "senders",
    "soft_bounces",
    "suppressions",
]


def open_pg(db: Database, **options: object) -> Ledger:
    return Ledger(db.url, password=db.password, **options)  # type: ignore[arg-type]


def test_an_empty_database_gets_the_whole_schema(postgres_db: Database, tmp_path: Path) -> None:
    with open_pg(postgres_db) as ledger:
        assert ledger.kind == "postgresql" and ledger.shared
        assert ledger.schema_version() == SCHEMA_VERSION
        assert ledger.table_names() == TABLES
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        assert ledger.table_names() == TABLES


def test_rows_read_by_position_and_by_name_and_japanese_round_trips(postgres_db: Database) -> None:
    with open_pg(postgres_db) as ledger:
        assert suppressions.suppress(ledger, "読者@example.jp", reason="manual", source="cli")
        assert not suppressions.suppress(ledger, "読者@EXAMPLE.JP", reason="manual", source="cli")
        row = ledger.execute("SELECT address, reason FROM suppressions").fetchone()
        assert row[0] == row["address"] == "読者@example.jp"
        assert dict(row) == {"address": "読者@example.jp", "reason": "manual"}
        # A literal '%' and '?' inside quotes pass through the placeholder translation.
        assert ledger.execute("SELECT '100%?' || ?", ("!",)).fetchone()[0] == "100%?!"


def test_a_transaction_rolls_back_on_error(postgres_db: Database) -> None:
    with open_pg(postgres_db) as ledger:
        with pytest.raises(RuntimeError), ledger.transaction():
            campaigns.create_campaign(
                ledger,
                "2026-W48/weekly",
                edition="2026-W48",
                list_name="weekly",
                kind="campaign",
                content_hash="x",
            )
            raise RuntimeError
        assert campaigns.count_campaigns(ledger) == 0


def test_a_statement_error_is_one_line_without_a_traceback(postgres_db: Database) -> None:
    with open_pg(postgres_db) as ledger, pytest.raises(LedgerError) as caught:
        ledger.execute("SELECT * FROM no_such_table")
    assert "no_such_table" in caught.value.message and "\n" not in caught.value.message


def test_an_older_shared_schema_is_refused_until_migrate(postgres_db: Database) -> None:
    with open_pg(postgres_db) as ledger:
        ledger.execute("DROP TABLE senders")
        ledger.execute("ALTER TABLE deliveries DROP COLUMN sender")
        ledger.execute("UPDATE ledger_schema SET version = 6")
    with pytest.raises(LedgerError) as caught:
        open_pg(postgres_db)
    assert "older" in caught.value.message and "ledger migrate" in (caught.value.hint or "")
    with open_pg(postgres_db, migrate=True) as ledger:
        assert ledger.schema_version() == SCHEMA_VERSION
        assert "senders" in ledger.table_names()


def test_a_newer_schema_is_refused(postgres_db: Database) -> None:
    with open_pg(postgres_db) as ledger:
        ledger.execute("UPDATE ledger_schema SET version = 99")
    with pytest.raises(LedgerError) as caught:
        open_pg(postgres_db)
    assert "newer" in caught.value.message and "upgrade digest-mail" in (caught.value.hint or "")


def test_the_password_comes_from_the_environment_never_the_url(
    postgres_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError) as caught:
        connect(postgres_db.url.replace("digest_mail@", f"digest_mail:{postgres_db.password}@"))
    assert postgres_db.password not in str(caught.value)
    monkeypatch.setenv("DIGEST_MAIL_LEDGER_PASSWORD", postgres_db.password)
    with connect(postgres_db.url) as ledger:
        assert ledger.description == postgres_db.url
    monkeypatch.setenv("DIGEST_MAIL_LEDGER_PASSWORD", "wrong")
    with pytest.raises(LedgerError) as refused:
        connect(postgres_db.url)
    assert "cannot connect" in refused.value.message and "wrong" not in str(refused.value)


def test_session_locks_are_seen_by_other_connections_and_die_with_them(
    postgres_db: Database,
) -> None:
    with open_pg(postgres_db) as one, open_pg(postgres_db) as two:
        assert one.try_lock("sender:a")
        assert two.is_locked("sender:a") and not two.try_lock("sender:a")
        one.close()
        # The server frees a closed session's locks once it notices the close.
        for _ in range(100):
            if not two.is_locked("sender:a"):
                break
            two.execute("SELECT pg_sleep(0.02)")
        assert two.try_lock("sender:a")


def test_the_server_notices_a_vanished_host_within_a_minute(postgres_db: Database) -> None:
    # A dead sender's or scheduler's advisory locks go only when the server drops its
    # session: its keepalives on our socket must not be the system's two hours.
    with open_pg(postgres_db) as ledger:
        row = ledger.execute(
            "SELECT current_setting('tcp_keepalives_idle'),"
            " current_setting('tcp_keepalives_interval'),"
            " current_setting('tcp_keepalives_count')"
        ).fetchone()
        assert tuple(row) == ("30", "10", "3")


def test_statements_are_planned_with_their_values_never_prepared(postgres_db: Database) -> None:
    # A prepared statement may keep a generic plan made while the deliveries table was
    # nearly empty, and a claim then scans the whole campaign (benchmarks/bench_postgres.py).
    with open_pg(postgres_db) as ledger:
        for seq in range(10):
            ledger.execute(
                "SELECT seq FROM deliveries WHERE campaign_id = ? AND seq > ?", ("c", seq)
            )
        assert ledger.execute("SELECT COUNT(*) FROM pg_prepared_statements").fetchone()[0] == 0


def test_a_claim_passes_over_another_senders_batch_and_the_last_pass_waits_for_it(
    postgres_db: Database,
) -> None:
    import itertools
    import threading
    import time

    from digest_mail.ledger import claims

    campaign = "2026-W48/weekly"
    ids = (f"<{n}@example.jp>" for n in itertools.count())
    with open_pg(postgres_db) as a, open_pg(postgres_db) as b, open_pg(postgres_db) as watch:
        campaigns.create_campaign(
            a, campaign, edition="2026-W48", list_name="weekly", kind="campaign", content_hash="x"
        )
        rows = [
            (campaign, n, f"r{n}@example.jp", f"r{n}@example.jp", "", "queued", "", "t")
            for n in range(1, 4)
        ]
        campaigns.insert_deliveries(a, campaign, rows)
        outcome: list[object] = []
        with b.transaction():
            # Sender B's claim, its transaction still open: its rows are locked.
            held, _ = claims.claim(b, campaign, 0, 3, message_ids=lambda: next(ids), sender="B")
            assert len(held) == 3
            # A passes over them at once (FOR UPDATE SKIP LOCKED) ...
            assert claims.claim(a, campaign, 0, 3, message_ids=lambda: next(ids), sender="A") == (
                [],
                None,
            )

            # ... and its last pass waits for B's claim to end.
            def last_pass() -> None:
                outcome.append(
                    claims.claim(
                        a, campaign, 0, 3, message_ids=lambda: next(ids), sender="A", wait=True
                    )
                )

            waiter = threading.Thread(target=last_pass)
            waiter.start()
            deadline = time.monotonic() + 10
            while not watch.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone():
                assert time.monotonic() < deadline and waiter.is_alive()
                time.sleep(0.01)
            assert not outcome
        waiter.join(10)
        # B's batch is B's: the last pass finds nothing left, and never took a row.
        assert outcome == [([], None)]
        senders_of = a.execute("SELECT DISTINCT sender FROM deliveries").fetchall()
        assert [row[0] for row in senders_of] == ["B"]
