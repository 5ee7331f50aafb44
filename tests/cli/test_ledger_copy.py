"""ledger copy: a workspace's SQLite history, made through the real commands (a scheduled
send through a real aiosmtpd, a stopped send, opt-outs with Japanese addresses, bounces,
an approval), moved into the suite's real PostgreSQL without loss; sending from the
copy recognizes the history (nobody twice, the suppressed never); a destination that
holds rows, or a copy that does not match, leaves the destination as it was."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path
from typing import Any

import pytest

from conftest import Runner
from delivery_draft import write_draft_folder
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.tables import TABLES, read_pages
from pgserver import Database
from schedule_helpers import set_schedules, weekly, write_list
from smtpserver import SmtpServer

pytestmark = pytest.mark.postgres

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bounces"
SECRET = "copy-test-secret-0123456789"
PARTNERS = [
    ("kobayashi.aoi@example.jp", "小林 葵"),
    ("sato.misaki@example.jp", "佐藤 美咲"),
    ("takahashi.ken@example.jp", "高橋 健"),
    ("ito.sora@example.com", "伊藤 空"),
]


def rows_of(ledger: Ledger) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, as plain tuples in key order (sorted here, not by the
    database: the two may collate text differently)."""
    found = {}
    for table in TABLES:
        cursor = ledger.execute(f"SELECT * FROM {table.name}")
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        found[table.name] = sorted(
            (tuple(sorted(row.items())) for row in rows),
            key=lambda items: [dict(items)[k] for k in table.key],
        )
    return found


def pg(db: Database) -> Ledger:
    return Ledger(db.url, password=db.password)


def make_history(root: Path, run: Runner, smtp_server: SmtpServer) -> dict[str, str]:
    """A SQLite ledger with every kind of row, written by the commands themselves."""
    env = {"DIGEST_MAIL_SMTP_URL": smtp_server.url, "DIGEST_MAIL_SECRET": SECRET}
    write_draft_folder(root)
    write_list(root, "partners", PARTNERS)
    set_schedules(root, weekly())
    assert run("approve", "2026-W48", env=env).exit_code == 0
    sent = run("schedule", "run-due", "--now", "2026-11-30T08:05:00+09:00", env=env)
    assert sent.exit_code == 0, sent.output
    # A send that stops with two readers deferred: one opts out meanwhile.
    smtp_server.reply_for("sato.misaki@example.jp", "451 4.3.0 Temporary lookup failure")
    smtp_server.reply_for("takahashi.ken@example.jp", "451 4.3.0 Temporary lookup failure")
    stopped = run(
        "send",
        "2026-W48",
        "--list",
        "partners",
        "--yes",
        env={**env, "DIGEST_MAIL_SMTP_RETRY_FOR": "0s"},
    )
    assert stopped.exit_code == 4, stopped.output
    for address in ("sato.misaki@example.jp", "読者@example.jp", "Hanako.Yamada@例え.jp"):
        assert run("unsubscribe", address, env=env).exit_code == 0
    box = mailbox.mbox(root / "bounces.mbox")
    for name in ("postfix-expired.eml", "postfix-hard.eml"):
        box.add((FIXTURES / name).read_bytes())
    box.flush()
    box.close()
    imported = run("bounces", "import", "bounces.mbox", "--trust-unmatched", env=env)
    assert imported.exit_code == 0, imported.output
    return env


def test_a_sqlite_history_moves_to_postgresql_whole_and_sending_goes_on_from_it(
    workspace: Path, run: Runner, smtp_server: SmtpServer, postgres_db: Database
) -> None:
    env = make_history(workspace, run, smtp_server)
    received = smtp_server.counts()
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        before = rows_of(ledger)
    # Every table holds history to move, each run of send included.
    assert {name for name, rows in before.items() if not rows} == set()
    assert any("読者@example.jp" in row[0] for row in before["suppressions"])

    pg_env = {**env, "DIGEST_MAIL_LEDGER_PASSWORD": postgres_db.password}
    # Small pages: every table is read in several, composite keys included.
    result = run(
        "ledger", "copy", "sqlite:///var/ledger.sqlite3", postgres_db.url, "--page", "7", env=pg_env
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"var/ledger.sqlite3 → {postgres_db.url}"
    counts = {line.split()[0]: int(line.split()[1]) for line in lines[1:-1]}
    assert counts == {name: len(rows) for name, rows in before.items()}
    assert all(line.endswith("  ok") for line in lines[1:-1])
    assert lines[-1] == (
        f"Copied {sum(counts.values())} rows; every table's count and checksum match the source."
    )
    assert postgres_db.password not in result.output
    with pg(postgres_db) as ledger:
        assert rows_of(ledger) == before
        # Analyzed: the first send from the copy plans with the real row counts.
        (planned,) = ledger.execute(
            "SELECT reltuples FROM pg_class WHERE relname = 'deliveries'"
        ).fetchone()
        assert planned == len(before["deliveries"])

    # The workspace now uses the copy: its history is recognized.
    on_pg = {**pg_env, "DIGEST_MAIL_LEDGER_URL": postgres_db.url}
    info = json.loads(run("ledger", "info", "--json", env=on_pg).output)
    assert info["kind"] == "postgresql" and info["rows"] == counts
    again = run("schedule", "run-due", "--now", "2026-11-30T08:10:00+09:00", env=on_pg)
    assert "done: already sent (2026-W48)" in again.output
    rerun = run("send", "2026-W48", "--list", "weekly", "--yes", env=on_pg)
    assert rerun.exit_code == 0 and rerun.output.startswith("Nothing left to send")
    resumed = run("send", "2026-W48", "--list", "partners", "--yes", env=on_pg)
    assert resumed.exit_code == 0, resumed.output
    # Only the reader still owed the edition got it now: the opted-out one never.
    assert smtp_server.counts() - received == {"takahashi.ken@example.jp": 1}
    assert max(smtp_server.counts().values()) == 1
    assert "sato.misaki@example.jp" not in smtp_server.counts()

    # And back: PostgreSQL into a new SQLite file, row for row.
    with pg(postgres_db) as ledger:
        now = rows_of(ledger)
    back = run(
        "ledger", "copy", postgres_db.url, "sqlite:///var/back.sqlite3", "--json", env=pg_env
    )
    assert back.exit_code == 0, back.output
    report = json.loads(back.output)
    assert report["committed"] and report["destination"] == "var/back.sqlite3"
    assert {t["table"]: t["copied_rows"] for t in report["tables"]} == {
        name: len(rows) for name, rows in now.items()
    }
    with Ledger(workspace / "var" / "back.sqlite3") as ledger:
        assert rows_of(ledger) == now


def test_a_destination_that_holds_rows_is_refused_and_left_as_it_was(
    workspace: Path, run: Runner, postgres_db: Database
) -> None:
    env = {"DIGEST_MAIL_LEDGER_PASSWORD": postgres_db.password}
    assert run("unsubscribe", "読者@example.jp").exit_code == 0
    with pg(postgres_db) as ledger:
        ledger.execute(
            "INSERT INTO suppressions (address, reason, created_at) VALUES (?, ?, ?)",
            ("kept@example.jp", "manual", "2026-11-01T00:00:00+00:00"),
        )
        before = rows_of(ledger)
    result = run("ledger", "copy", "sqlite:///var/ledger.sqlite3", postgres_db.url, env=env)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {postgres_db.url}: the destination already holds rows (suppressions 1); "
        "ledger copy writes only into an empty ledger\n"
        "Hint: copy into a new, empty database or SQLite file\n"
    )
    with pg(postgres_db) as ledger:
        assert rows_of(ledger) == before


def test_a_copy_that_differs_from_the_source_is_rolled_back(
    workspace: Path, run: Runner, postgres_db: Database
) -> None:
    env = {"DIGEST_MAIL_LEDGER_PASSWORD": postgres_db.password}
    for address in ("読者@example.jp", "lost@example.jp", "taro@example.jp"):
        assert run("unsubscribe", address).exit_code == 0
    with pg(postgres_db) as ledger:
        # The destination's own trigger loses one row: only the check can notice.
        ledger.execute(
            "CREATE FUNCTION lose_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.address = 'lost@example.jp' THEN RETURN NULL; END IF; RETURN NEW; END $$"
        )
        ledger.execute(
            "CREATE TRIGGER lose_one BEFORE INSERT ON suppressions "
            "FOR EACH ROW EXECUTE FUNCTION lose_one()"
        )
    result = run("ledger", "copy", "sqlite:///var/ledger.sqlite3", postgres_db.url, env=env)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    (suppressions,) = [line for line in lines if line.startswith("  suppressions")]
    assert " 2 rows " in suppressions and "MISMATCH: 3 rows in the source" in suppressions
    assert lines[-2:] == [
        f"Error: the copy differs from the source in suppressions; rolled back, nothing was "
        f"written to {postgres_db.url}",
        "Hint: stop every send and schedule on the source, then copy again",
    ]
    with pg(postgres_db) as ledger:
        assert all(rows == [] for rows in rows_of(ledger).values())
        # A changed value, with the count equal, is caught by the checksum.
        ledger.execute("DROP TRIGGER lose_one ON suppressions")
        ledger.execute(
            "CREATE FUNCTION change_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "NEW.detail = 'changed'; RETURN NEW; END $$"
        )
        ledger.execute(
            "CREATE TRIGGER change_one BEFORE INSERT ON suppressions "
            "FOR EACH ROW EXECUTE FUNCTION change_one()"
        )
    changed = run("ledger", "copy", "sqlite:///var/ledger.sqlite3", postgres_db.url, env=env)
    assert changed.exit_code == 1
    assert "the copy differs from the source in suppressions" in changed.output
    (suppressions,) = [line for line in changed.output.splitlines() if "suppressions" in line[:16]]
    assert " 3 rows " in suppressions and "MISMATCH: 3 rows in the source" in suppressions
    with pg(postgres_db) as ledger:
        assert all(rows == [] for rows in rows_of(ledger).values())


def test_urls_are_checked_before_anything_is_opened(
    workspace: Path, run: Runner, postgres_db: Database
) -> None:
    with_password = postgres_db.url.replace("digest_mail@", f"digest_mail:{postgres_db.password}@")
    refused = run("ledger", "copy", "sqlite:///var/ledger.sqlite3", with_password)
    assert refused.exit_code == 1
    assert refused.output.startswith("Error: the ledger URL carries a password")
    assert postgres_db.password not in refused.output
    missing = run("ledger", "copy", "sqlite:///var/nothing.sqlite3", postgres_db.url)
    assert missing.output == (
        "Error: no ledger to copy: var/nothing.sqlite3 does not exist\n"
        "Hint: a relative sqlite:/// URL is relative to the workspace\n"
    )
    assert not (workspace / "var" / "nothing.sqlite3").exists()
    assert run("unsubscribe", "読者@example.jp").exit_code == 0
    same = run("ledger", "copy", "sqlite:///var/ledger.sqlite3", "sqlite:///var/ledger.sqlite3")
    assert same.exit_code == 1
    assert "the source and the destination are the same ledger" in same.output


def test_tables_are_read_a_page_at_a_time_in_key_order(
    tmp_path: Path, ledger_kind: str, postgres_db: Database
) -> None:
    # The streaming a 200,000-row deliveries table relies on, at a smaller size.
    ledger = Ledger(tmp_path / "ledger.sqlite3") if ledger_kind == "sqlite" else pg(postgres_db)
    with ledger:
        rows = [(f"読者{n:05d}@example.jp", "manual", "", "", "2026-11-01") for n in range(2500)]
        ledger.executemany(
            "INSERT INTO suppressions (address, reason, source, detail, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        (table,) = [t for t in TABLES if t.name == "suppressions"]
        columns = ["address", "reason", "source", "detail", "created_at"]
        pages = list(read_pages(ledger, table, columns, page=1000))
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert [row for p in pages for row in p] == rows
