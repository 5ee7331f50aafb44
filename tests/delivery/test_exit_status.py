"""The exit status tells the truth: 0 complete, 3 stopped, 4 incomplete, 5 uncertain only;
and the summary of a run says what that run did (CLI, real aiosmtpd)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Runner
from delivery_draft import write_draft_folder
from smtpserver import SmtpServer


@pytest.fixture
def env(workspace: Path, smtp_server: SmtpServer) -> dict[str, str]:
    write_draft_folder(workspace)
    return {
        "DIGEST_MAIL_SMTP_URL": smtp_server.url,
        "DIGEST_MAIL_SECRET": "exit-test-secret-0123456789",
        "DIGEST_MAIL_SMTP_RETRY_FOR": "0s",
    }


def write_list(root: Path, name: str, addresses: list[str]) -> None:
    rows = ["email,name"] + [f"{a},読者" for a in addresses]
    (root / "subscribers" / f"{name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_a_run_whose_every_recipient_bounced_says_so_and_exits_0(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    addresses = ["gone1@example.jp", "gone2@example.jp", "gone3@example.jp"]
    write_list(workspace, "small", addresses)
    for address in addresses:
        smtp_server.reply_for(address, "550 5.1.1 <mailbox> unknown user", times=None)
    result = run("send", "2026-W48", "--list", "small", "--yes", env=env)
    # Complete: every failure is about that reader's mailbox.
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:4] == [
        "Sent 2026-W48 to small: 0 sent, 0 deferred, 3 failed, 0 suppressed, 0 skipped-invalid",
        *(f"  {a}: 550 5.1.1 <mailbox> unknown user" for a in addresses),
    ]
    again = run("send", "2026-W48", "--list", "small", "--yes", env=env)
    assert again.exit_code == 0
    assert again.output.splitlines()[0] == (
        "Nothing left to send: 2026-W48 to small is complete "
        "(0 sent, 0 deferred, 3 failed, 0 suppressed, 0 skipped-invalid)"
    )


def test_a_resumed_run_says_what_it_sent_and_where_the_campaign_stands(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    addresses = ["a@example.jp", "b@example.jp", "c@example.jp"]
    write_list(workspace, "small", addresses)
    smtp_server.reply_for("b@example.jp", "451 4.3.0 try later", times=None)
    first = run("send", "2026-W48", "--list", "small", "--yes", env=env)
    assert first.exit_code == 4, first.output
    assert first.output.splitlines()[-1] == (
        "Hint: rerun 'digest-mail send 2026-W48 --list small' to resume"
    )
    smtp_server.handler.always.clear()
    rerun = run("send", "2026-W48", "--list", "small", "--yes", env=env)
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.splitlines()[0] == (
        "Sent 2026-W48 to small: 1 this run; in all 3 sent, 0 deferred, 0 failed, "
        "0 suppressed, 0 skipped-invalid"
    )


def test_json_reports_what_the_run_tried(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    write_list(workspace, "small", ["a@example.jp", "b@example.jp"])
    smtp_server.reply_for("a@example.jp", "550 5.1.1 unknown user", times=None)
    result = run("send", "2026-W48", "--list", "small", "--yes", "--json", env=env)
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert (report["sent_this_run"], report["tried_this_run"], report["complete"]) == (1, 2, True)


def test_test_send_with_a_deferred_address_exits_4(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    smtp_server.reply_for("later@example.jp", "450 4.2.0 mailbox busy", times=None)
    result = run("test-send", "2026-W48", "--to", "later@example.jp", env=env)
    assert result.exit_code == 4
    assert result.output.splitlines()[0] == (
        "Test-sent 2026-W48 to addresses: 0 sent, 1 deferred, 0 failed, 0 suppressed, "
        "0 skipped-invalid"
    )
