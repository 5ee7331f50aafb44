"""send, test-send, status and dev-smtp through the CLI, against a real aiosmtpd."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest

from conftest import Runner
from delivery_draft import SAMPLE_DRAFT, write_draft_folder
from digest_mail.transport.aiosmtp import AiosmtpConnection
from digest_mail.transport.devsmtp import serve_capture
from digest_mail.transport.pool import SmtpTransport
from digest_mail.transport.relay import parse_relay_url
from smtpserver import SmtpServer, parse_message


def subscribed(root: Path, name: str) -> list[str]:
    with open(root / "subscribers" / f"{name}.csv", encoding="utf-8") as handle:
        return [row["email"] for row in csv.DictReader(handle) if row["status"] == "subscribed"]


@pytest.fixture
def env(workspace: Path, smtp_server: SmtpServer) -> dict[str, str]:
    write_draft_folder(workspace)
    return {
        "DIGEST_MAIL_SMTP_URL": smtp_server.url,
        "DIGEST_MAIL_SECRET": "cli-test-secret-0123456789",
    }


def test_send_refuses_to_run_unconfirmed_without_a_terminal(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    count = len(subscribed(workspace, "weekly"))
    result = run("send", "2026-W48", "--list", "weekly", env=env)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: refusing to send 2026-W48 to {count} recipients without confirmation\n"
        "Hint: add --yes: 'digest-mail send 2026-W48 --list weekly --yes'\n"
    )
    assert smtp_server.received == []
    assert run("status", env=env).output == (
        "Error: no campaigns yet\nHint: campaigns are named EDITION/LIST, e.g. 2026-W48/weekly\n"
    )


def test_dry_run_counts_and_sends_nothing(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    count = len(subscribed(workspace, "weekly"))
    result = run("send", "2026-W48", "--list", "weekly", "--dry-run", env=env)
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Would send 2026-W48 to {count} of list weekly via SMTP relay {smtp_server.url} "
        "(0 already sent, 0 suppressed, 0 skipped-invalid)\n"
    )
    assert smtp_server.received == []


def test_send_then_rerun_then_status(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    addresses = subscribed(workspace, "weekly")
    count = len(addresses)
    result = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"Sent 2026-W48 to weekly: {count} sent, 0 deferred, 0 failed, 0 suppressed, "
        "0 skipped-invalid"
    )
    assert sorted(smtp_server.counts()) == sorted(a.lower() for a in addresses)
    again = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert again.exit_code == 0
    assert again.output.splitlines()[0] == (
        "Nothing left to send: 2026-W48 to weekly is complete "
        f"({count} sent, 0 deferred, 0 failed, 0 suppressed, 0 skipped-invalid)"
    )
    assert len(smtp_server.received) == count
    status = run("status", env=env)
    assert status.exit_code == 0
    assert status.output == (
        f"2026-W48/weekly (campaign, finished): {count} recipients\n"
        f"  {count} sent, 0 queued, 0 deferred, 0 failed, 0 suppressed, 0 skipped-invalid, "
        "0 uncertain\n"
    )
    data = json.loads(run("status", "2026-W48/weekly", "--json", env=env).output)
    assert [(d["campaign"], d["sent"], d["complete"]) for d in data] == [
        ("2026-W48/weekly", count, True)
    ]


def test_partial_failure_prints_replies_and_the_resume_hint(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    addresses = subscribed(workspace, "weekly")
    smtp_server.reply_for(addresses[0], "550 5.1.1 <mailbox> unknown user", times=None)
    smtp_server.reply_for(addresses[1], "451 4.3.0 Temporary lookup failure", times=None)
    result = run(
        "send",
        "2026-W48",
        "--list",
        "weekly",
        "--yes",
        env={**env, "DIGEST_MAIL_SMTP_RETRY_FOR": "0s"},
    )
    assert result.exit_code == 4  # incomplete: a deferred recipient is left to resend
    assert result.output == (
        f"Sent 2026-W48 to weekly: {len(addresses) - 2} sent, 1 deferred, 1 failed, 0 suppressed, "
        "0 skipped-invalid\n"
        f"  {addresses[0]}: 550 5.1.1 <mailbox> unknown user\n"
        f"  {addresses[1]}: 451 4.3.0 Temporary lookup failure\n"
        "Error: campaign 2026-W48/weekly is not complete (1 deferred after retrying: rerun to try "
        "them again)\n"
        "Hint: rerun 'digest-mail send 2026-W48 --list weekly' to resume\n"
    )
    status = run("status", "2026-W48/weekly", env=env)
    assert status.output.splitlines()[2:] == [
        "  Failed or deferred:",
        f"    {addresses[0]}: 550 5.1.1 <mailbox> unknown user (1 attempt)",
        f"    {addresses[1]}: 451 4.3.0 Temporary lookup failure (1 attempt)",
        "  Stopped: 1 deferred after retrying: rerun to try them again",
        "  Resume: digest-mail send 2026-W48 --list weekly",
    ]
    # The relay recovers: the rerun sends the deferred one only; the bounce stays failed.
    smtp_server.handler.always.clear()
    smtp_server.reply_for(addresses[0], "550 5.1.1 <mailbox> unknown user", times=None)
    rerun = run("send", "2026-W48", "--list", "weekly", "--yes", "--json", env=env)
    assert rerun.exit_code == 0
    report = json.loads(rerun.output)
    assert (report["sent"], report["failed"], report["sent_this_run"]) == (len(addresses) - 1, 1, 1)
    assert smtp_server.counts()[addresses[1]] == 1


def test_relay_refusing_login_stops_with_one_line_and_resume_hint(
    workspace: Path, run: Runner
) -> None:
    write_draft_folder(workspace)
    server = SmtpServer(auth={"digest": "correct horse"}).start()
    try:
        env = {
            "DIGEST_MAIL_SMTP_URL": f"smtp://digest@127.0.0.1:{server.port}",
            "DIGEST_MAIL_SMTP_PASSWORD": "wrong",
            "DIGEST_MAIL_SECRET": "cli-test-secret-0123456789",
        }
        result = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
        count = len(subscribed(workspace, "weekly"))
        assert result.exit_code == 3  # stopped: the relay refused us
        stopped, error, hint = result.output.splitlines()
        assert stopped == (
            "Stopped 2026-W48 to weekly: 0 sent, 0 deferred, 0 failed, 0 suppressed, "
            f"0 skipped-invalid, {count} not yet sent"
        )
        # One line naming the relay, the login and the reply (wording is the pool's own).
        assert error.startswith(f"Error: smtp://127.0.0.1:{server.port} (user digest)")
        assert "'digest'" in error and "535 5.7.8 Authentication credentials invalid" in error
        assert hint.startswith("Hint: ")
        assert hint.endswith("rerun 'digest-mail send 2026-W48 --list weekly' to resume")
        assert server.received == []
    finally:
        server.stop()


def test_test_send_marks_subject_and_refuses_subscriber_lists(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    refused = run("test-send", "2026-W48", "--to", "weekly", env=env)
    assert refused.exit_code == 1
    assert refused.output == (
        "Error: test-send only goes to the staff list 'staff', not 'weekly'\n"
        "Hint: use 'digest-mail send 2026-W48 --list weekly' to send to a subscriber list\n"
    )
    sent = run("test-send", env=env)  # DRAFT defaults to the newest draft
    staff = subscribed(workspace, "staff")
    assert sent.exit_code == 0, sent.output
    assert sent.output == (
        f"Test-sent 2026-W48 to staff: {len(staff)} sent, 0 deferred, 0 failed, 0 suppressed, "
        "0 skipped-invalid\n"
    )
    one = run("test-send", "2026-W48", "--to", "guest@example.net", env=env)
    assert one.exit_code == 0
    assert sorted(smtp_server.counts()) == sorted([*staff, "guest@example.net"])
    for item in smtp_server.received:
        assert parse_message(item.data)["Subject"] == "[TEST] " + SAMPLE_DRAFT.subject


async def test_dev_smtp_keeps_what_it_receives(tmp_path: Path) -> None:
    stop = asyncio.Event()
    ports: list[int] = []
    seen: list[tuple[str, list[str], int]] = []
    server = asyncio.create_task(
        serve_capture(
            tmp_path / "dev",
            port=0,
            on_start=ports.append,
            on_message=lambda s, r, n: seen.append((s, r, n)),
            stop=stop,
        )
    )
    while not ports:
        await asyncio.sleep(0)
    transport = SmtpTransport(
        parse_relay_url(f"smtp://127.0.0.1:{ports[0]}"), connection=AiosmtpConnection, size=1
    )
    data = "Subject: テスト\r\n\r\n本文\r\n".encode()
    await transport.send("digest@example.jp", ["taro@example.jp"], data)
    await transport.close()
    stop.set()
    await server
    (stored,) = (tmp_path / "dev" / "new").iterdir()
    assert stored.read_bytes() == data
    assert seen == [("digest@example.jp", ["taro@example.jp"], len(data))]


def test_dev_smtp_help_has_an_example(run: Runner) -> None:
    result = run("dev-smtp", "--help")
    assert result.exit_code == 0
    assert "DIGEST_MAIL_SMTP_URL=smtp://127.0.0.1:1025 digest-mail test-send" in result.output


def test_status_lists_uncertain_deliveries_and_both_resume_commands(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    from digest_mail.config import find_workspace
    from ledger_rows import workspace_ledger

    addresses = subscribed(workspace, "weekly")
    assert run("send", "2026-W48", "--list", "weekly", "--yes", env=env).exit_code == 0
    # What a killed run leaves: two rows claimed, their outcome unknown.
    ws = find_workspace(workspace)
    with workspace_ledger(ws) as ledger, ledger.transaction():
        ledger.execute(
            "UPDATE deliveries SET state = 'sending' WHERE email IN (?, ?)",
            (addresses[2], addresses[5]),
        )
    rerun = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert rerun.exit_code == 5  # only uncertain rows remain
    assert rerun.output.splitlines()[-1] == (
        "Hint: 2 may have been delivered already; rerun 'digest-mail send 2026-W48 --list weekly "
        "--resend-uncertain' to send them again"
    )
    status = run("status", "2026-W48/weekly", env=env)
    assert status.output.splitlines()[1:] == [
        f"  {len(addresses) - 2} sent, 0 queued, 0 deferred, 0 failed, 0 suppressed, "
        "0 skipped-invalid, 2 uncertain",
        "  Uncertain (in flight when a run or its connection died; may have been delivered):",
        f"    {addresses[2]}",
        f"    {addresses[5]}",
        "  Stopped: 2 uncertain (in flight when a run or its connection died):"
        " resend with --resend-uncertain",
        "  Resume: digest-mail send 2026-W48 --list weekly",
        "  Resend the uncertain ones: digest-mail send 2026-W48 --list weekly --resend-uncertain",
    ]
    resent = run("send", "2026-W48", "--list", "weekly", "--yes", "--resend-uncertain", env=env)
    assert resent.exit_code == 0, resent.output
    assert smtp_server.counts()[addresses[2].lower()] == 2


def test_status_right_after_a_crash_shows_the_in_flight_rows_as_uncertain(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer, ledger_kind: str
) -> None:
    import socket

    from digest_mail.config import find_workspace
    from digest_mail.delivery import lock
    from digest_mail.ledger.db import open_ledger

    addresses = subscribed(workspace, "weekly")
    assert run("send", "2026-W48", "--list", "weekly", "--yes", env=env).exit_code == 0
    ws = find_workspace(workspace)
    # A sender that claimed two rows: while it lives, they are in flight, not uncertain.
    with open_ledger(ws) as ledger, lock.sender_seat(ledger, "2026-W48/weekly") as sender:
        with ledger.transaction():
            ledger.execute(
                "UPDATE deliveries SET state = 'sending', sender = ? WHERE email IN (?, ?)",
                (sender, addresses[2], addresses[5]),
            )
            ledger.execute("UPDATE campaigns SET state = 'sending'")
        live = run("status", "2026-W48/weekly", env=env)
        # Its seat is left without a word: as a process killed mid-send leaves it.
    assert live.output.splitlines()[1] == (
        f"  {len(addresses) - 2} sent, 2 queued, 0 deferred, 0 failed, 0 suppressed, "
        "0 skipped-invalid, 0 uncertain"
    )
    status = run("status", "2026-W48/weekly", env=env)
    assert status.exit_code == 0
    host, pid = socket.gethostname(), sender.split("/")[1]
    lines = status.output.splitlines()
    assert lines[:5] == [
        f"2026-W48/weekly (campaign, sending): {len(addresses)} recipients",
        f"  {len(addresses) - 2} sent, 0 queued, 0 deferred, 0 failed, 0 suppressed, "
        "0 skipped-invalid, 2 uncertain",
        "  Uncertain (in flight when a run or its connection died; may have been delivered):",
        f"    {addresses[2]}",
        f"    {addresses[5]}",
    ]
    if ledger_kind == "postgresql":
        # A shared ledger shows each sender's share: the first run, and the one that died.
        assert lines[5] == "  Senders:"
        assert lines[6].startswith(f"    {host} pid ") and "(finished via " in lines[6]
        assert lines[6].endswith(f"{len(addresses) - 2} sent, 0 uncertain, 0 failed, 0 deferred")
        assert lines[7] == f"    {host} pid {pid} (died): 0 sent, 2 uncertain, 0 failed, 0 deferred"
        lines = lines[:5] + lines[8:]
    assert lines[5:] == [
        "  Stopped: no sender is running: 2 were in flight when it died",
        "  Resume: digest-mail send 2026-W48 --list weekly",
        "  Resend the uncertain ones: digest-mail send 2026-W48 --list weekly --resend-uncertain",
    ]
    data = json.loads(run("status", "2026-W48/weekly", "--json", env=env).output)
    assert [(d["uncertain"], d["queued"], d["complete"]) for d in data] == [(2, 0, False)]
