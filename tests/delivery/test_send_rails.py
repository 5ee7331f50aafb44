"""The editor's traps around ``send``: an empty list, the default list, misspelt list
names. Walked through the CLI as an editor would, against a real aiosmtpd."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import Runner
from delivery_draft import write_draft_folder
from digest_mail.config import find_workspace
from digest_mail.delivery.campaign import campaign_id_for
from digest_mail.ledger.campaigns import sent_editions
from digest_mail.ledger.db import utcnow
from ledger_rows import workspace_ledger
from schedule_helpers import set_schedules, weekly
from smtpserver import SmtpServer

SECRET = "rails-test-secret-0123456789"


def _subscribed(root: Path, name: str) -> int:
    with open(root / "subscribers" / f"{name}.csv", encoding="utf-8") as handle:
        return sum(1 for row in csv.DictReader(handle) if row["status"] == "subscribed")


def _env(smtp_server: SmtpServer) -> dict[str, str]:
    return {"DIGEST_MAIL_SMTP_URL": smtp_server.url, "DIGEST_MAIL_SECRET": SECRET}


def test_an_empty_list_is_an_error_and_readers_added_later_get_the_edition(
    tmp_path: Path, run: Runner, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("init", "news", "--staff", "editor@example.jp").exit_code == 0
    monkeypatch.chdir(tmp_path / "news")
    set_schedules(tmp_path / "news", weekly())
    env = _env(smtp_server)
    assert run("compose", env=env).exit_code == 0
    (edition,) = [p.name for p in (tmp_path / "news" / "drafts").iterdir()]
    assert run("approve", edition, env=env).exit_code == 0
    listed = run("schedule", "list", env=env)
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[-1] == (
        "  warning: weekly has no readers yet: the run will fail until you add some "
        "('digest-mail subscribers add weekly ADDRESS')"
    )
    empty = (
        "Error: nothing to send: list weekly has no subscribed reader (it is empty)\n"
        "Hint: add readers with 'digest-mail subscribers add weekly ADDRESS', then send again\n"
    )

    sent = run("send", "--list", "weekly", "--yes", env=env)
    assert (sent.exit_code, sent.output) == (1, empty)
    dry = run("send", "--list", "weekly", "--dry-run", env=env)
    assert (dry.exit_code, dry.output) == (1, empty)
    ws = find_workspace(tmp_path / "news")
    with workspace_ledger(ws) as ledger:
        assert ledger.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0] == 0
        assert sent_editions(ledger, "weekly") == set()
    assert smtp_server.received == []

    added = run("subscribers", "add", "weekly", "Reader@Example.JP", "--name", "読者 一郎")
    assert added.exit_code == 0, added.output
    listed = run("schedule", "list", env=env)
    assert f"sends {edition}" in listed.output and "warning" not in listed.output
    dry = run("send", "--list", "weekly", "--dry-run", env=env)
    assert dry.output == (
        f"Would send {edition} to 1 of list weekly via SMTP relay {smtp_server.url} "
        "(0 already sent, 0 suppressed, 0 skipped-invalid)\n"
    )
    sent = run("send", "--list", "weekly", "--yes", env=env)
    assert sent.exit_code == 0, sent.output
    assert sent.output.splitlines()[0] == (
        f"Sent {edition} to weekly: 1 sent, 0 deferred, 0 failed, 0 suppressed, 0 skipped-invalid"
    )
    again = run("send", "--list", "weekly", "--yes", env=env)
    assert again.exit_code == 0
    assert again.output.startswith(f"Nothing left to send: {edition} to weekly is complete")
    (message,) = smtp_server.received
    assert message.recipients == ("Reader@example.jp",)
    assert message.message["To"].addresses[0].addr_spec == "Reader@example.jp"
    with workspace_ledger(ws) as ledger:
        assert sent_editions(ledger, "weekly") == {edition}
    listed = run("schedule", "list", env=env)
    assert f"the newest approved edition {edition} was already sent to weekly" in listed.output


def test_a_campaign_recorded_complete_with_nobody_is_not_a_sent_campaign(
    workspace: Path, run: Runner, smtp_server: SmtpServer
) -> None:
    # What an older digest-mail left after sending to an empty list: finished, 0 rows.
    write_draft_folder(workspace)
    ws = find_workspace(workspace)
    with workspace_ledger(ws) as ledger, ledger.transaction():
        ledger.execute(
            "INSERT INTO campaigns (id, edition, list_name, kind, content_hash, state, "
            "created_at, started_at, finished_at) VALUES (?, '2026-W48', 'weekly', 'campaign', "
            "'old', 'finished', ?, ?, ?)",
            (campaign_id_for("2026-W48", "weekly"), utcnow(), utcnow(), utcnow()),
        )
    with workspace_ledger(ws) as ledger:
        assert sent_editions(ledger, "weekly") == set()
    env = _env(smtp_server)
    count = _subscribed(workspace, "weekly")
    dry = run("send", "2026-W48", "--list", "weekly", "--dry-run", env=env)
    assert dry.output.startswith(f"Would send 2026-W48 to {count} of list weekly")
    sent = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert sent.exit_code == 0, sent.output
    assert sent.output.startswith(f"Sent 2026-W48 to weekly: {count} sent")
    assert len(smtp_server.received) == count


def test_a_list_where_everyone_is_suppressed_or_invalid_is_an_error(
    workspace: Path, run: Runner, smtp_server: SmtpServer
) -> None:
    write_draft_folder(workspace)
    weekly = workspace / "subscribers" / "weekly.csv"
    weekly.write_text(
        "email,name,status\nhanako@example.jp,花子,subscribed\ntaro@example.jp,太郎,subscribed\n",
        encoding="utf-8",
    )
    env = _env(smtp_server)
    for address in ("hanako@example.jp", "taro@example.jp"):
        assert run("unsubscribe", address, env=env).exit_code == 0
    sent = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert (sent.exit_code, sent.output) == (
        1,
        "Error: nothing to send: all 2 readers of list weekly are suppressed (unsubscribed or "
        "bounced)\n"
        "Hint: add readers with 'digest-mail subscribers add weekly ADDRESS'; see "
        "'digest-mail suppressions list'\n",
    )
    weekly.write_text("email,name\nnot-an-address,壊れた行\n", encoding="utf-8")
    sent = run("send", "2026-W48", "--list", "weekly", "--dry-run", env=env)
    assert (sent.exit_code, sent.output) == (
        1,
        "Error: nothing to send: all 1 rows of list weekly are invalid\n"
        "Hint: fix them (see 'digest-mail subscribers check weekly') or add readers with "
        "'digest-mail subscribers add weekly ADDRESS'\n",
    )
    weekly.write_text(
        "email,name\nnot-an-address,壊れた行\nhanako@example.jp,花子\n", encoding="utf-8"
    )
    sent = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert (sent.exit_code, sent.output) == (
        1,
        "Error: nothing to send: list weekly has 1 suppressed and 1 invalid rows and no other "
        "reader\n"
        "Hint: fix the invalid rows (see 'digest-mail subscribers check weekly') or add readers "
        "with 'digest-mail subscribers add weekly ADDRESS'\n",
    )
    with workspace_ledger(workspace) as ledger:
        assert ledger.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0] == 0
    assert smtp_server.received == []


def test_send_without_list_uses_the_default_list_and_says_so(
    workspace: Path, run: Runner, smtp_server: SmtpServer
) -> None:
    write_draft_folder(workspace)
    env = _env(smtp_server)
    dry = run("send", "2026-W48", "--dry-run", env=env)
    assert dry.exit_code == 0, dry.output
    assert dry.output == (
        "Using list weekly ([lists] default)\n"
        f"Would send 2026-W48 to {_subscribed(workspace, 'weekly')} of list weekly via SMTP "
        f"relay {smtp_server.url} "
        "(0 already sent, 0 suppressed, 0 skipped-invalid)\n"
    )
    config = workspace / "digest-mail.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('default = "weekly"', 'default = "monthly"'),
        encoding="utf-8",
    )
    (workspace / "subscribers" / "monthly.csv").write_text(
        "email,name\nikeda@example.jp,池田\nmori@example.jp,森\n", encoding="utf-8"
    )
    sent = run("send", "2026-W48", "--yes", env=env)
    assert sent.exit_code == 0, sent.output
    assert sent.output.splitlines()[:2] == [
        "Using list monthly ([lists] default)",
        "Sent 2026-W48 to monthly: 2 sent, 0 deferred, 0 failed, 0 suppressed, 0 skipped-invalid",
    ]
    assert sorted(smtp_server.counts()) == ["ikeda@example.jp", "mori@example.jp"]


def test_a_misspelt_list_name_names_the_real_lists(
    workspace: Path, run: Runner, smtp_server: SmtpServer
) -> None:
    write_draft_folder(workspace)
    env = _env(smtp_server)
    expected = (
        "Error: no list 'weekley': subscribers/weekley.csv does not exist (lists: staff, "
        "weekly)\n"
        "Hint: Did you mean 'weekly'?\n"
    )
    for args in (
        ("send", "2026-W48", "--list", "weekley", "--yes"),
        ("send", "2026-W48", "--list", "weekley", "--dry-run"),
        ("subscribers", "count", "weekley"),
        ("subscribers", "check", "weekley"),
        ("subscribers", "remove", "weekley", "yamada.taro@example.jp"),
        ("subscribers", "export", "weekley"),
    ):
        result = run(*args, env=env)
        assert (result.exit_code, result.output) == (1, expected), args
    added = run("subscribers", "add", "weekley", "new@example.jp", env=env)
    assert (added.exit_code, added.output) == (
        1,
        "Error: no list 'weekley': subscribers/weekley.csv does not exist (lists: staff, "
        "weekly)\n"
        "Hint: Did you mean 'weekly'? To start a new list 'weekley', add --new-list\n",
    )
    assert not (workspace / "subscribers" / "weekley.csv").exists()
    assert smtp_server.received == []


def test_a_new_list_name_still_starts_a_list(workspace: Path, run: Runner) -> None:
    write_draft_folder(workspace)
    added = run("subscribers", "add", "monthly", "new@example.jp")
    assert (added.exit_code, added.output) == (
        0,
        "added new@example.jp on subscribers/monthly.csv\n",
    )
    alike = run("subscribers", "add", "weekly2", "new@example.jp", "--new-list")
    assert (alike.exit_code, alike.output) == (
        0,
        "added new@example.jp on subscribers/weekly2.csv\n",
    )
    missing = run("send", "2026-W48", "--list", "quarterly", "--dry-run")
    assert (missing.exit_code, missing.output) == (
        1,
        "Error: no list 'quarterly': subscribers/quarterly.csv does not exist (lists: monthly, "
        "staff, weekly, weekly2)\n"
        "Hint: start the list with 'digest-mail subscribers add quarterly ADDRESS'\n",
    )


def test_list_names_in_test_send_and_unsubscribe_are_checked_too(
    workspace: Path, run: Runner, smtp_server: SmtpServer
) -> None:
    write_draft_folder(workspace)
    env = _env(smtp_server)
    typo = run("test-send", "2026-W48", "--to", "staf", env=env)
    assert (typo.exit_code, typo.output) == (
        1,
        "Error: test-send only goes to the staff list 'staff', not 'staf'\n"
        "Hint: Did you mean 'staff'?\n",
    )
    unknown = run("test-send", "2026-W48", "--to", "weeky", env=env)
    assert (unknown.exit_code, unknown.output) == (
        1,
        "Error: test-send only goes to the staff list 'staff', not 'weeky'\n"
        "Hint: give --to staff or an address (there is no list 'weeky')\n",
    )
    unsubscribed = run("unsubscribe", "hanako@example.jp", "--list", "weekley", env=env)
    assert (unsubscribed.exit_code, unsubscribed.output) == (
        1,
        "Error: no list 'weekley': subscribers/weekley.csv does not exist (lists: staff, "
        "weekly)\n"
        "Hint: Did you mean 'weekly'?\n",
    )
    assert smtp_server.received == []
    assert not (workspace / "var" / "ledger.sqlite3").exists() or run(
        "suppressions", "list", env=env
    ).output.endswith("0 suppressions\n")


def test_a_misspelt_staff_list_in_the_config_is_named(workspace: Path, run: Runner) -> None:
    write_draft_folder(workspace)
    config = workspace / "digest-mail.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('staff = "staff"', 'staff = "stafff"'),
        encoding="utf-8",
    )
    result = run("test-send", "2026-W48")
    assert (result.exit_code, result.output) == (
        1,
        "Error: no list 'stafff': subscribers/stafff.csv does not exist (lists: staff, weekly)\n"
        "Hint: Did you mean 'staff'?\n",
    )


def test_two_empty_lists_are_named_together(
    tmp_path: Path, run: Runner, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("init", "news", "--staff", "editor@example.jp").exit_code == 0
    monkeypatch.chdir(tmp_path / "news")
    (tmp_path / "news" / "subscribers" / "partners.csv").write_text(
        "email,name,status\n", encoding="utf-8"
    )
    env = _env(smtp_server)
    assert run("compose", env=env).exit_code == 0
    sent = run("send", "--list", "weekly", "--list", "partners", "--yes", env=env)
    assert sent.exit_code == 1
    assert sent.output.splitlines()[0] == (
        "Error: nothing to send: lists partners, weekly have no subscribed reader (they are empty)"
    )
