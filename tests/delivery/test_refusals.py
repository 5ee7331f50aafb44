"""A relay's permanent refusal is classified by whom it is about: the reader's mailbox
(fail and suppress that reader) or us (stop the campaign, suppress nobody, requeue),
whatever the stage; the circuit breaker stops what cannot be classified."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import Runner
from delivery_draft import write_draft_folder
from digest_mail.config import find_workspace
from digest_mail.delivery.campaign import run_campaign
from digest_mail.delivery.report import BreakerTripped
from digest_mail.delivery.retry import BREAKER_MIN_REJECTED, BREAKER_SAME_REPLY
from digest_mail.ledger.suppressions import is_suppressed
from digest_mail.render.draft import load_draft
from digest_mail.transport.errors import (
    PermanentFailure,
    RelayError,
    TemporaryFailure,
    classify_refusal,
    refusal,
)
from ledger_rows import workspace_ledger
from smtpserver import SmtpServer

SENDER_REJECTED = "553 5.7.1 <digest@example.jp>: Sender address rejected: not owned by user taro"


@pytest.mark.parametrize(
    ("code", "text", "stage", "about"),
    [
        # About the reader's mailbox: RFC 3463 X.1.x (not the sender's) and X.2.0/X.2.1.
        (
            550,
            "5.1.1 <a@example.jp>: Recipient address rejected: User unknown",
            "recipient",
            "mailbox",
        ),
        (553, "5.1.3 Bad destination mailbox address syntax", "recipient", "mailbox"),
        (550, "5.1.10 Recipient address rejected: null MX", "recipient", "mailbox"),
        (550, "5.2.1 Mailbox disabled", "recipient", "mailbox"),
        (550, "5.1.1 mailbox unknown", "message", "mailbox"),
        (
            550,
            "5.1.0 <digest@example.jp>: Sender address rejected: User unknown",
            "recipient",
            "us",
        ),
        # About that reader, not their mailbox's existence: failed, never suppressed.
        (552, "5.2.2 Mailbox full, over quota", "recipient", "recipient"),
        (
            554,
            "5.7.1 <a@example.jp>: Recipient address rejected: Access denied",
            "recipient",
            "recipient",
        ),
        # About us, at whatever stage the relay says it.
        (553, SENDER_REJECTED[4:], "recipient", "us"),
        (554, "5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied", "recipient", "us"),
        (554, "5.7.1 <a@example.org>: Relay access denied", "recipient", "us"),
        (530, "5.7.0 Authentication required", "recipient", "us"),
        (535, "Authentication credentials invalid", "connect", "us"),
        (
            550,
            "5.1.8 <digest@example.jp>: Sender address rejected: Domain not found",
            "recipient",
            "us",
        ),
        (552, "5.3.4 Message size exceeds fixed limit", "message", "us"),
        (554, "5.6.0 Message content rejected", "message", "us"),
        (501, "5.5.4 Syntax error in parameters", "recipient", "us"),
        (554, "Transaction failed", "message", "us"),
        (550, "Go away", "sender", "us"),
        # No enhanced code at RCPT: the words tell, or nobody knows.
        (550, "No such user here", "recipient", "mailbox"),
        (550, "Relaying denied", "recipient", "us"),
        (550, "Go away", "recipient", "unknown"),
        (554, "Transaction failed", "recipient", "unknown"),
    ],
)
def test_classify_refusal(code: int, text: str, stage: str, about: str) -> None:
    assert classify_refusal(code, text, stage=stage, recipient="a@example.jp") == about


def test_refusal_builds_the_failure_each_class_needs() -> None:
    relay = "smtp://127.0.0.1:587 (user digest)"
    temporary = refusal(450, "4.7.1 later", stage="recipient", recipient="a@x.jp", relay=relay)
    assert isinstance(temporary, TemporaryFailure)
    bounced = refusal(550, "5.1.1 unknown", stage="recipient", recipient="a@x.jp", relay=relay)
    assert isinstance(bounced, PermanentFailure) and bounced.bounced
    full = refusal(552, "5.2.2 full", stage="recipient", recipient="a@x.jp", relay=relay)
    assert isinstance(full, PermanentFailure) and not full.bounced
    auth = refusal(
        530, "5.7.0 Authentication required", stage="sender", recipient="a@x.jp", relay=relay
    )
    assert isinstance(auth, RelayError)
    assert auth.message == f"{relay} refused us at MAIL FROM: 530 5.7.0 Authentication required"
    assert auth.hint == (
        "the relay wants a login: put the user in the URL (smtp://USER@host:587) or "
        "[smtp] username, and set DIGEST_MAIL_SMTP_PASSWORD"
    )


@pytest.fixture
def env(workspace: Path, smtp_server: SmtpServer) -> dict[str, str]:
    write_draft_folder(workspace)
    return {
        "DIGEST_MAIL_SMTP_URL": smtp_server.url,
        "DIGEST_MAIL_SECRET": "refusal-test-secret-0123456789",
        "DIGEST_MAIL_SMTP_CONCURRENCY": "1",
    }


def subscribed(root: Path, name: str) -> list[str]:
    with open(root / "subscribers" / f"{name}.csv", encoding="utf-8") as handle:
        return [row["email"] for row in csv.DictReader(handle) if row["status"] == "subscribed"]


def ledger_states(root: Path) -> tuple[dict[str, int], int]:
    ws = find_workspace(root)
    with workspace_ledger(ws) as ledger:
        states = dict(
            ledger.execute(
                "SELECT state, COUNT(*) FROM deliveries WHERE campaign_id = '2026-W48/weekly' "
                "GROUP BY state"
            ).fetchall()
        )
        suppressed = ledger.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0]
    return states, suppressed


@pytest.mark.parametrize("client", ["pipelining", "aiosmtplib"])
def test_sender_refused_at_rcpt_stops_suppresses_nobody_and_the_rerun_delivers(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer, client: str
) -> None:
    env = {**env, "DIGEST_MAIL_SMTP_CLIENT": client}
    addresses = subscribed(workspace, "weekly")
    for address in addresses:
        smtp_server.reply_for(address, SENDER_REJECTED, times=None)
    result = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert result.exit_code == 3, result.output
    assert result.output.splitlines() == [
        "Stopped 2026-W48 to weekly: 0 sent, 0 deferred, 0 failed, 0 suppressed, "
        f"0 skipped-invalid, {len(addresses)} not yet sent",
        f"Error: {smtp_server.url} refused us at RCPT TO: {SENDER_REJECTED}",
        "Hint: check [newsletter] from and the relay's sender policy (with a login, the "
        "addresses that login may send as); then rerun 'digest-mail send 2026-W48 --list "
        "weekly' to resume",
    ]
    assert ledger_states(workspace) == ({"queued": len(addresses)}, 0)
    smtp_server.handler.always.clear()  # the relay's policy is fixed
    rerun = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert rerun.exit_code == 0, rerun.output
    assert sorted(smtp_server.counts().values()) == [1] * len(addresses)
    assert ledger_states(workspace) == ({"sent": len(addresses)}, 0)


def test_a_mailbox_refusal_fails_and_suppresses_only_that_reader(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    addresses = subscribed(workspace, "weekly")
    smtp_server.reply_for(
        addresses[3], f"550 5.1.1 <{addresses[3]}>: Recipient address rejected: User unknown"
    )
    smtp_server.reply_for(addresses[4], "552 5.2.2 Mailbox full")
    result = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert result.exit_code == 0, result.output
    states, suppressed = ledger_states(workspace)
    assert (states, suppressed) == ({"sent": len(addresses) - 2, "failed": 2}, 1)
    ws = find_workspace(workspace)
    with workspace_ledger(ws) as ledger:
        assert is_suppressed(ledger, addresses[3]) and not is_suppressed(ledger, addresses[4])


def test_the_same_unclassifiable_reply_trips_the_breaker(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    addresses = subscribed(workspace, "weekly")
    for address in addresses:
        smtp_server.reply_for(address, "550 Go away", times=None)
    result = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert result.exit_code == 3, result.output
    assert result.output.splitlines()[1:] == [
        f"Error: circuit breaker: the relay gave the same reply to {BREAKER_SAME_REPLY} of the "
        "first recipients: 550 Go away",
        "Hint: nobody was suppressed and every recipient is queued: a relay problem is more "
        "likely than that many dead mailboxes; check the relay's log and policy (if the list "
        "really is that stale, rerun with --no-breaker); then rerun 'digest-mail send "
        "2026-W48 --list weekly' to resume",
    ]
    assert ledger_states(workspace) == ({"queued": len(addresses)}, 0)


def test_a_list_where_everyone_does_not_exist_trips_the_breaker(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    addresses = subscribed(workspace, "weekly")
    for address in addresses:
        smtp_server.reply_for(address, f"550 5.1.1 <{address}>: User unknown", times=None)
    result = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert result.exit_code == 3, result.output
    assert result.output.splitlines()[1] == (
        f"Error: circuit breaker: {BREAKER_MIN_REJECTED} of the first {BREAKER_MIN_REJECTED} "
        f"recipients were refused (last: 550 5.1.1 <{addresses[BREAKER_MIN_REJECTED - 1]}>: "
        "User unknown)"
    )
    assert ledger_states(workspace) == ({"queued": len(addresses)}, 0)
    # The operator knows the list is that stale: without the breaker they fail and bounce.
    forced = run("send", "2026-W48", "--list", "weekly", "--yes", "--no-breaker", env=env)
    assert forced.exit_code == 0, forced.output
    assert ledger_states(workspace) == ({"failed": len(addresses)}, len(addresses))


def test_a_stopped_run_raises_its_stop_with_the_campaigns_report(
    workspace: Path, env: dict[str, str], smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = subscribed(workspace, "weekly")
    for address in addresses:
        smtp_server.reply_for(address, "550 Go away", times=None)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    ws = find_workspace(workspace)
    with pytest.raises(BreakerTripped) as caught:
        run_campaign(ws, load_draft(ws, "2026-W48"), "weekly")
    stop = caught.value
    assert stop.exit_code == 3 and stop.report is not None
    report = stop.report
    assert (report.campaign_id, report.sent, report.queued) == (
        "2026-W48/weekly",
        0,
        len(addresses),
    )
    assert report.stopped == stop.message and not report.complete
    assert stop.hint is not None
    assert stop.hint.endswith("; then rerun 'digest-mail send 2026-W48 --list weekly' to resume")
