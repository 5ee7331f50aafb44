"""ledger info and ledger migrate, on the SQLite file and on the suite's real PostgreSQL:
which database (never a password), its schema, its rows; an older schema brought up to
date, a newer one refused in one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Runner
from digest_mail.config import find_workspace
from digest_mail.ledger import approvals, suppressions
from digest_mail.ledger.db import SCHEMA_VERSION, Ledger, open_ledger
from digest_mail.ledger.tables import TABLES

NEXT = SCHEMA_VERSION  # the version the code migrates to


def ledger_of(root: Path) -> Ledger:
    return open_ledger(find_workspace(root))


def shown(root: Path, ledger_kind: str) -> str:
    """How the commands name the workspace's ledger."""
    if ledger_kind == "sqlite":
        return "var/ledger.sqlite3"
    return os.environ["DIGEST_MAIL_LEDGER_URL"]


def make_older(ledger: Ledger) -> None:
    """Undo migration 7, as a ledger of the previous digest-mail would be."""
    ledger.execute("DROP TABLE senders")
    ledger.execute("ALTER TABLE deliveries DROP COLUMN sender")
    if ledger.kind == "sqlite":
        ledger.execute("PRAGMA user_version = 6")
    else:
        ledger.execute("UPDATE ledger_schema SET version = 6")


def set_version(ledger: Ledger, version: int) -> None:
    if ledger.kind == "sqlite":
        ledger.execute(f"PRAGMA user_version = {version}")
    else:
        ledger.execute("UPDATE ledger_schema SET version = ?", (version,))


def test_the_tables_listed_are_the_schema(tmp_path: Path) -> None:
    # A migration that adds a table must add it to TABLES, or ledger copy would leave it.
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        assert sorted(t.name for t in TABLES) == ledger.table_names()


def test_info_shows_the_database_its_schema_and_its_rows(
    workspace: Path, run: Runner, ledger_kind: str
) -> None:
    with ledger_of(workspace) as ledger:
        suppressions.suppress(ledger, "読者@example.jp", reason="manual", source="cli")
        suppressions.suppress(ledger, "taro@example.jp", reason="unsubscribed", source="weekly")
        approvals.record_approval(
            ledger,
            "2026-W48",
            content_hash="c0ffee",
            approved_at="2026-11-28T00:00:00+00:00",
            approved_by="編集部",
        )
    result = run("ledger", "info")
    assert result.exit_code == 0, result.output
    where = "shared by several hosts" if ledger_kind == "postgresql" else "this host only"
    assert result.output.splitlines()[:2] == [
        f"ledger {shown(workspace, ledger_kind)} ({ledger_kind}, {where})",
        f"schema {SCHEMA_VERSION} (this digest-mail: {SCHEMA_VERSION})",
    ]
    counts = dict(line.split() for line in result.output.splitlines()[2:])
    assert counts == {t.name: "0" for t in TABLES} | {"suppressions": "2", "approvals": "1"}
    data = json.loads(run("ledger", "info", "--json").output)
    assert data["kind"] == ledger_kind and data["schema"] == SCHEMA_VERSION
    assert data["rows"]["suppressions"] == 2 and data["rows"]["deliveries"] == 0
    if ledger_kind == "postgresql":
        password = os.environ["DIGEST_MAIL_LEDGER_PASSWORD"]
        assert (
            password not in result.output and data["ledger"] == os.environ["DIGEST_MAIL_LEDGER_URL"]
        )


@pytest.mark.sqlite_only
def test_info_before_any_ledger_creates_none(workspace: Path, run: Runner) -> None:
    result = run("ledger", "info")
    assert result.exit_code == 1
    assert result.output == (
        "Error: no ledger yet: var/ledger.sqlite3 does not exist\n"
        "Hint: the first send, approve or unsubscribe creates it\n"
    )
    assert not (workspace / "var" / "ledger.sqlite3").exists()


def test_migrate_brings_an_older_schema_up_then_has_nothing_to_do(
    workspace: Path, run: Runner, ledger_kind: str
) -> None:
    with ledger_of(workspace) as ledger:
        suppressions.suppress(ledger, "読者@example.jp", reason="manual", source="cli")
        make_older(ledger)
    name = shown(workspace, ledger_kind)
    if ledger_kind == "postgresql":
        # A shared database is not upgraded behind the other hosts' backs.
        refused = run("ledger", "info")
        assert refused.exit_code == 1
        assert refused.output == (
            f"Error: {name}: ledger schema version 6 is older than this digest-mail ({NEXT})\n"
            "Hint: stop digest-mail on the other hosts, then run "
            f"'digest-mail ledger migrate {name}'\n"
        )
    result = run("ledger", "migrate")
    assert result.exit_code == 0, result.output
    assert result.output == f"ledger {name}: schema 6 → {NEXT}\n"
    again = run("ledger", "migrate")
    assert again.output == f"ledger {name}: already at schema {NEXT}\n"
    data = json.loads(run("ledger", "migrate", "--json").output)
    assert data == {"ledger": name, "kind": ledger_kind, "before": NEXT, "after": NEXT}
    with ledger_of(workspace) as ledger:
        assert ledger.schema_version() == NEXT and "senders" in ledger.table_names()
        assert suppressions.is_suppressed(ledger, "読者@example.jp")


def test_migrate_refuses_a_newer_schema_in_one_line(
    workspace: Path, run: Runner, ledger_kind: str
) -> None:
    with ledger_of(workspace) as ledger:
        set_version(ledger, NEXT + 1)
    name = shown(workspace, ledger_kind)
    if ledger_kind == "sqlite":
        name = str(workspace / "var" / "ledger.sqlite3")
    result = run("ledger", "migrate")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {name}: ledger schema version {NEXT + 1} is newer than this digest-mail "
        f"({NEXT})\nHint: upgrade digest-mail\n"
    )
    # Nothing changed: the next command still finds the newer version.
    assert run("ledger", "info").output == result.output


@pytest.mark.postgres
def test_migrate_a_ledger_named_by_url_and_a_password_in_it_is_refused_unshown(
    workspace: Path, run: Runner, postgres_db
) -> None:
    env = {"DIGEST_MAIL_LEDGER_PASSWORD": postgres_db.password}
    result = run("ledger", "migrate", postgres_db.url, env=env)
    assert result.exit_code == 0, result.output
    assert result.output == f"ledger {postgres_db.url}: new, schema {NEXT}\n"
    with_password = postgres_db.url.replace("digest_mail@", f"digest_mail:{postgres_db.password}@")
    refused = run("ledger", "migrate", with_password, env=env)
    assert refused.exit_code == 1
    assert postgres_db.password not in refused.output
    assert refused.output.startswith("Error: the ledger URL carries a password")
    assert not (workspace / "var" / "ledger.sqlite3").exists()
