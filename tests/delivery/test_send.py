"""Campaign sends against a real aiosmtpd server on 127.0.0.1: exactly once, resumable."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import FakeClock
from delivery_draft import SAMPLE_DRAFT
from digest_mail.audience.unsubscribe import signing_key, verify_token
from digest_mail.config import Workspace, find_workspace
from digest_mail.delivery.campaign import run_campaign
from digest_mail.delivery.report import CampaignError
from digest_mail.delivery.status import campaign_status
from digest_mail.delivery.testsend import send_test
from digest_mail.ledger.migrations import MIGRATIONS
from digest_mail.ledger.suppressions import get_suppression, is_suppressed, suppress
from ledger_rows import workspace_ledger
from smtpserver import SmtpServer

SURNAMES = ["山田", "佐藤", "鈴木", "高橋", "田中", "渡辺", "伊藤", "中村", "小林", "加藤"]
GIVEN = ["太郎", "花子", "美咲", "健", "結衣", "一郎", "さくら", "翔太", "陽菜", "髙志"]


def write_list(root: Path, name: str, count: int, *, extra: str = "") -> list[str]:
    lines = ["email,name,status,subscribed_at"]
    addresses = []
    for i in range(count):
        address = f"reader{i:05d}@example.{('jp', 'com', 'net')[i % 3]}"
        person = f"{SURNAMES[i % 10]} {GIVEN[(i // 10) % 10]}" if i % 7 else ""
        lines.append(f"{address},{person},subscribed,2026-01-01")
        addresses.append(address)
    (root / "subscribers" / f"{name}.csv").write_text(
        "\n".join(lines) + "\n" + extra, encoding="utf-8"
    )
    return addresses


def smtp_workspace(
    root: Path, server: SmtpServer, monkeypatch: pytest.MonkeyPatch, **env: str
) -> Workspace:
    monkeypatch.setenv("DIGEST_MAIL_SMTP_URL", server.url)
    monkeypatch.setenv("DIGEST_MAIL_SECRET", "test-secret-0123456789abcdef")
    for key, value in env.items():
        monkeypatch.setenv(f"DIGEST_MAIL_SMTP_{key.upper()}", value)
    return find_workspace(root)


def states(ws: Workspace, campaign: str) -> dict[str, int]:
    with workspace_ledger(ws) as ledger:
        rows = ledger.execute(
            "SELECT state, COUNT(*) FROM deliveries WHERE campaign_id = ? GROUP BY state",
            (campaign,),
        ).fetchall()
    return {state: n for state, n in rows}


def test_every_recipient_gets_exactly_one_message_with_own_unsubscribe_link(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = write_list(workspace, "readers", 60)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (report.total, report.sent, report.failed, report.deferred, report.uncertain) == (
        60,
        60,
        0,
        0,
        0,
    )
    assert report.sent_this_run == 60 and report.complete
    counts = smtp_server.counts()
    assert sorted(counts) == sorted(addresses)
    assert set(counts.values()) == {1}
    key = signing_key(ws)
    message_ids = set()
    for address, (item,) in smtp_server.by_recipient().items():
        msg = item.message
        assert item.envelope_from == "digest@example.jp"
        assert b"Content-Transfer-Encoding: 8bit" in item.data  # the relay offers 8BITMIME
        assert msg["To"].addresses[0].addr_spec == address
        assert msg["Subject"] == SAMPLE_DRAFT.subject
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["X-Digest-Edition"] == "2026-W48"
        assert msg["List-Id"] == "Chrysanthemum Digest <weekly.chrysanthemum-digest.example.jp>"
        assert msg["Date"] is not None
        message_ids.add(msg["Message-ID"])
        https, mailto = (link.strip().strip("<>") for link in msg["List-Unsubscribe"].split(","))
        token = parse_qs(urlsplit(https).query)["t"][0]
        assert verify_token(key, token) == ("readers", address)
        assert mailto.endswith(token)
        text = msg.get_body(("plain",))
        html = msg.get_body(("html",))
        assert text is not None and html is not None
        assert https in text.get_content()
        assert f'href="{https}"' in html.get_content()
        assert f"{address} 宛" in text.get_content()
        name = msg["To"].addresses[0].display_name
        assert f"{f'{name} さん' if name else '読者の皆さま'}、こんにちは。" in text.get_content()
        assert "\n.a line that starts with a dot" in html.get_content()
    assert len(message_ids) == 60
    assert states(ws, "2026-W48/readers") == {"sent": 60}


def test_rerun_sends_nothing_more(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_list(workspace, "readers", 25)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    again = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert again.sent == 25 and again.sent_this_run == 0
    assert len(smtp_server.received) == 25


def test_temporary_failures_are_retried_until_delivered(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = write_list(workspace, "readers", 30)
    for address in addresses[:6]:
        smtp_server.reply_for(address, "451 4.7.1 Greylisted, try again later", times=2)
    smtp_server.reply_for(addresses[7], "452 4.2.2 Mailbox full", times=1)
    smtp_server.reply_for(addresses[8], "421 4.7.0 Too many connections, closing", times=1)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    clock = FakeClock()
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=clock)
    assert (report.sent, report.deferred, report.failed) == (30, 0, 0)
    assert set(smtp_server.counts().values()) == {1} and len(smtp_server.counts()) == 30
    assert clock.slept, "the retries waited (on the injected clock)"
    assert all(s > 0 for s in clock.slept)
    with workspace_ledger(ws) as ledger:
        attempts = dict(
            ledger.execute(
                "SELECT email, attempts FROM deliveries WHERE campaign_id = '2026-W48/readers'"
            ).fetchall()
        )
    assert [attempts[a] for a in addresses[:6]] == [3] * 6
    assert (
        attempts[addresses[7]] == 2 and attempts[addresses[8]] == 2 and attempts[addresses[9]] == 1
    )


def test_retrying_stops_after_retry_for_and_a_rerun_delivers(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = write_list(workspace, "readers", 5)
    smtp_server.reply_for(addresses[2], "450 4.2.1 Mailbox busy", times=50)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch, retry_for="10m")
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (report.sent, report.deferred) == (4, 1)
    assert not report.complete
    assert report.failures == [
        {
            "email": addresses[2],
            "code": 450,
            "reply": "4.2.1 Mailbox busy",
            "attempts": report.failures[0]["attempts"],
        }
    ]
    with workspace_ledger(ws) as ledger:
        ledger.execute("SELECT 1")
    smtp_server.handler.rcpt_replies.clear()
    again = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (again.sent, again.deferred, again.sent_this_run) == (5, 0, 1)
    assert smtp_server.counts()[addresses[2]] == 1


def test_permanent_failures_fail_and_bounces_are_suppressed(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = write_list(workspace, "readers", 10)
    smtp_server.reply_for(addresses[1], "550 5.1.1 No such user", times=None)
    smtp_server.reply_for(
        addresses[2], "553 5.1.3 Bad destination mailbox address syntax", times=None
    )
    smtp_server.reply_for(addresses[3], "552 5.2.2 Mailbox full, over quota", times=None)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (report.sent, report.failed) == (7, 3)
    failures = {f["email"]: (f["code"], f["reply"]) for f in report.failures}
    assert failures[addresses[1]] == (550, "5.1.1 No such user")
    assert failures[addresses[3]] == (552, "5.2.2 Mailbox full, over quota")
    with workspace_ledger(ws) as ledger:
        assert is_suppressed(ledger, addresses[1]) and is_suppressed(ledger, addresses[2])
        assert not is_suppressed(ledger, addresses[3])
        suppression = get_suppression(ledger, addresses[1])
        assert suppression is not None and suppression.reason == "bounced"
        assert suppression.detail == "550 5.1.1 No such user"
    # The failures stay failed; a new campaign to the list skips the bounced addresses.
    rerun = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert rerun.sent_this_run == 0 and rerun.failed == 3


def test_connection_dropped_after_the_message_is_uncertain_not_resent(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The relay drops the connection after the final dot, before its reply: the message
    may have been queued, so those readers are uncertain, resent only when asked."""
    addresses = write_list(workspace, "readers", 40)
    smtp_server.drop_during_data(times=3)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch, concurrency="4")
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (report.sent, report.deferred, report.failed, report.uncertain) == (37, 0, 0, 3)
    assert report.exit_code == 5
    assert smtp_server.handler.transactions == 40
    counts = smtp_server.counts()
    assert len(counts) == 37 and set(counts.values()) == {1}
    resent = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock(), resend_uncertain=True)
    assert (resent.sent, resent.uncertain, resent.sent_this_run) == (40, 0, 3)
    counts = smtp_server.counts()
    assert sorted(counts) == sorted(addresses) and set(counts.values()) == {1}


def test_suppressed_and_invalid_rows_are_recorded_not_sent(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = write_list(
        workspace,
        "readers",
        8,
        extra="taro@@example.jp,壊れた,subscribed,2026-01-01\nREADER00001@example.com,重複,subscribed,2026-01-01\n",
    )
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    with workspace_ledger(ws) as ledger:
        suppress(ledger, addresses[4], reason="unsubscribed", source="test")
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (report.total, report.sent, report.suppressed, report.skipped_invalid) == (8, 7, 1, 2)
    assert addresses[4] not in smtp_server.counts()
    assert report.summary() == "7 sent, 0 deferred, 0 failed, 1 suppressed, 2 skipped-invalid"


def test_relay_refusing_auth_stops_cleanly_with_ledger_intact(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_list(workspace, "readers", 5)
    server = SmtpServer(auth={"digest": "right-password"}).start()
    try:
        monkeypatch.setenv("DIGEST_MAIL_SMTP_PASSWORD", "wrong-password")
        monkeypatch.setenv("DIGEST_MAIL_SMTP_USERNAME", "digest")
        ws = smtp_workspace(workspace, server, monkeypatch)
        with pytest.raises(CampaignError) as info:
            run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
        assert str(info.value).startswith(
            f"smtp://127.0.0.1:{server.port} (user digest) refused the login for 'digest': 535"
        )
        assert "rerun 'digest-mail send 2026-W48 --list readers' to resume" in (
            info.value.hint or ""
        )
        assert states(ws, "2026-W48/readers") == {"queued": 5}
        assert server.received == []
        monkeypatch.setenv("DIGEST_MAIL_SMTP_PASSWORD", "right-password")
        report = run_campaign(find_workspace(workspace), SAMPLE_DRAFT, "readers", clock=FakeClock())
        assert report.sent == 5 and len(server.received) == 5
        # The resumed run completed it: the first run's stop reason no longer applies.
        assert (report.state, report.stopped, report.complete) == ("finished", "", True)
        with workspace_ledger(ws) as ledger:
            row = ledger.execute(
                "SELECT state, note FROM campaigns WHERE id = '2026-W48/readers'"
            ).fetchone()
        assert tuple(row) == ("finished", "")
    finally:
        server.stop()


def test_required_starttls_missing_stops_the_campaign(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_list(workspace, "readers", 3)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    monkeypatch.setenv("DIGEST_MAIL_SMTP_URL", smtp_server.url + "?tls=starttls")
    ws = find_workspace(workspace)
    with pytest.raises(CampaignError) as info:
        run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert "TLS" in str(info.value)
    assert states(ws, "2026-W48/readers") == {"queued": 3}
    assert smtp_server.received == []


def test_uncertain_rows_are_reported_and_resent_only_on_request(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = write_list(workspace, "readers", 10)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    # What a run killed mid-batch leaves behind: rows claimed ('sending'), results unknown.
    with workspace_ledger(ws) as ledger, ledger.transaction():
        ledger.execute(
            "UPDATE deliveries SET state = 'sending' WHERE email IN (?, ?)",
            (addresses[3], addresses[4]),
        )
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (report.sent, report.uncertain, report.sent_this_run) == (8, 2, 0)
    assert report.uncertain_addresses == [addresses[3], addresses[4]]
    assert "--resend-uncertain" in report.stopped
    (status,) = campaign_status(ws, "2026-W48/readers")
    assert status.uncertain == 2
    resent = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock(), resend_uncertain=True)
    assert (resent.sent, resent.uncertain, resent.sent_this_run) == (10, 0, 2)
    assert resent.complete
    with workspace_ledger(ws) as ledger:
        flagged = {r[0] for r in ledger.execute("SELECT email FROM deliveries WHERE uncertain = 1")}
    assert flagged == {addresses[3], addresses[4]}


def test_changed_draft_is_refused_once_sending_started(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from delivery_draft import make_draft

    write_list(workspace, "readers", 3)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    with pytest.raises(
        CampaignError, match="draft 2026-W48 changed after campaign 2026-W48/readers started"
    ):
        run_campaign(ws, make_draft(subject="別の件名"), "readers", clock=FakeClock())


def test_test_send_goes_to_staff_with_test_prefix_and_refuses_subscriber_lists(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    with pytest.raises(CampaignError) as info:
        send_test(ws, SAMPLE_DRAFT, to=["weekly"])
    assert str(info.value) == "test-send only goes to the staff list 'staff', not 'weekly'"
    assert smtp_server.received == []
    first = send_test(ws, SAMPLE_DRAFT)
    second = send_test(ws, SAMPLE_DRAFT, to=["staff", "guest@example.net"])
    assert first.sent == 3 and first.kind == "test"
    assert second.sent == 4
    subjects = {item.message["Subject"] for item in smtp_server.received}
    assert subjects == {"[TEST] " + SAMPLE_DRAFT.subject}
    assert smtp_server.counts()["editors@example.jp"] == 2
    with workspace_ledger(ws) as ledger:
        kinds = ledger.execute("SELECT kind, COUNT(*) FROM campaigns GROUP BY kind").fetchall()
    assert [tuple(k) for k in kinds] == [("test", 2)]


def test_test_send_to_an_empty_staff_list_is_an_error_not_zero_sent(workspace: Path) -> None:
    (workspace / "subscribers" / "staff.csv").write_text("email,name\n", encoding="utf-8")
    with pytest.raises(CampaignError) as info:
        send_test(find_workspace(workspace), SAMPLE_DRAFT)
    assert str(info.value) == (
        "nobody to test-send to: subscribers/staff.csv has no subscribed address"
    )
    assert info.value.hint == "add yours with 'digest-mail subscribers add staff you@example.jp'"


def test_capture_transport_writes_a_maildir(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    from email import message_from_bytes, policy

    monkeypatch.setenv("DIGEST_MAIL_SECRET", "test-secret-0123456789abcdef")
    addresses = write_list(workspace, "readers", 4)
    ws = find_workspace(workspace)
    report = run_campaign(ws, SAMPLE_DRAFT, "readers")
    assert report.sent == 4 and report.transport.startswith("capture to ")
    files = sorted((workspace / "outbox" / "new").iterdir())
    assert len(files) == 4
    envelopes = [
        json.loads(line)
        for line in (workspace / "outbox" / "envelopes.jsonl").read_text().splitlines()
    ]
    assert sorted(e["to"][0] for e in envelopes) == sorted(addresses)
    by_file = {e["file"]: e for e in envelopes}
    for path in files:
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert [str(msg["To"].addresses[0].addr_spec)] == by_file[path.name]["to"]
    # Addresses and unsubscribe tokens live here: nobody but the owner may list or read it.
    for folder in ("outbox", "outbox/new", "outbox/tmp", "outbox/cur"):
        assert (workspace / folder).stat().st_mode & 0o077 == 0, folder


def test_ledger_rows_never_stay_sending_after_a_clean_run(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_list(workspace, "readers", 30)
    smtp_server.reply_for("reader00003@example.jp", "451 4.3.0 try later")
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    with workspace_ledger(ws) as ledger:
        left = ledger.execute("SELECT COUNT(*) FROM deliveries WHERE state != 'sent'")
        assert left.fetchone()[0] == 0
        assert [tuple(r) for r in ledger.execute("SELECT state FROM campaigns")] == [("finished",)]


def test_an_unsubscribe_during_the_send_is_honoured(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = write_list(workspace, "readers", 120)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch, concurrency="2")
    late = addresses[100]

    def unsubscribe_late_reader(_: object) -> None:
        if len(smtp_server.handler.received) == 1:
            with workspace_ledger(ws) as ledger:
                suppress(ledger, late, reason="unsubscribed", source="one-click")

    smtp_server.handler.on_message = unsubscribe_late_reader
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (report.sent, report.suppressed) == (119, 1)
    assert late not in smtp_server.counts()
    assert states(ws, "2026-W48/readers") == {"sent": 119, "suppressed": 1}


@pytest.mark.sqlite_only  # several senders share a campaign on PostgreSQL (test_senders.py)
def test_one_sender_per_campaign_on_sqlite(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest_mail.delivery.lock import only_sender
    from digest_mail.ledger.db import open_ledger

    write_list(workspace, "readers", 3)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    with open_ledger(ws) as other:
        only_sender(other, "2026-W48/readers")
        with pytest.raises(CampaignError) as info:
            run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert str(info.value) == "campaign 2026-W48/readers is being sent by another process"
    assert smtp_server.received == []
    assert run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock()).sent == 3


def test_an_unreadable_list_leaves_no_campaign_behind(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from digest_mail.errors import InputError

    (workspace / "subscribers" / "broken.csv").write_bytes(b"email,name\n" + b"\xff\xfe\x00bad\n")
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    with pytest.raises(InputError) as info:
        run_campaign(ws, SAMPLE_DRAFT, "broken", clock=FakeClock())
    assert "broken.csv" in str(info.value)
    with workspace_ledger(ws) as ledger:
        assert ledger.execute("SELECT COUNT(*) FROM campaigns").fetchone()[0] == 0
    with pytest.raises(InputError, match=r"nothing\.csv"):
        run_campaign(ws, SAMPLE_DRAFT, "nothing", clock=FakeClock())
    assert smtp_server.received == []


def test_a_relay_deferring_everyone_is_not_hammered_and_everyone_arrives(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = write_list(workspace, "readers", 260)
    first_tries: list[str] = []
    order: list[str] = []
    for address in addresses:
        smtp_server.reply_for(address, "421 4.7.0 Too many messages, slow down", times=1)
    original = smtp_server.handler.handle_RCPT

    async def watch(server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        order.append(address)
        if address not in first_tries:
            first_tries.append(address)
        return await original(server, session, envelope, address, options)

    smtp_server.handler.handle_RCPT = watch  # type: ignore[method-assign]
    ws = smtp_workspace(workspace, smtp_server, monkeypatch, concurrency="2")
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (report.sent, report.deferred) == (260, 0)
    assert set(smtp_server.counts().values()) == {1}
    # About 100 readers were deferred before the first retry went out (plus the rows
    # already claimed into the queue: two batches of 4 x concurrency), not all 260.
    first_retry = next(i for i, a in enumerate(order) if order.index(a) != i)
    assert len(set(order[:first_retry])) <= 100 + 2 * 4 * 2


def test_the_callers_signal_handlers_are_restored_after_a_send(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signal

    def mine(signum: int, frame: object) -> None:  # pragma: no cover - never delivered
        pass

    monkeypatch.setenv("DIGEST_MAIL_SECRET", "test-secret-0123456789abcdef")
    write_list(workspace, "readers", 2)
    previous = signal.signal(signal.SIGTERM, mine)
    try:
        assert run_campaign(find_workspace(workspace), SAMPLE_DRAFT, "readers").sent == 2
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.sqlite_only  # the file's PRAGMA user_version, rewound by hand
def test_a_campaign_half_sent_under_ledger_version_4_resumes_after_the_upgrade(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Migration 5 drops the (campaign, state, seq) index. A ledger left mid-campaign by
    # the version before it: 20 rows sent, 9 queued, 1 in flight when the run died.
    addresses = write_list(workspace, "readers", 30)
    ws = smtp_workspace(workspace, smtp_server, monkeypatch)
    run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    before = smtp_server.counts()
    with sqlite3.connect(ws.ledger_path) as db:
        db.execute(
            "UPDATE deliveries SET state = 'queued' WHERE campaign_id = '2026-W48/readers' "
            "AND seq > 21"
        )
        db.execute("UPDATE deliveries SET state = 'sending' WHERE seq = 21")
        db.execute("UPDATE campaigns SET state = 'stopped'")
        db.execute("CREATE INDEX deliveries_by_state ON deliveries (campaign_id, state, seq)")
        # What migration 6 added did not exist then either.
        db.execute("DROP TABLE campaign_lists")
        db.execute("ALTER TABLE campaigns DROP COLUMN already_received")
        # Nor what migration 7 added.
        db.execute("DROP TABLE senders")
        db.execute("ALTER TABLE deliveries DROP COLUMN sender")
        db.execute("PRAGMA user_version = 4")
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert (report.sent, report.uncertain, report.sent_this_run) == (29, 1, 9)
    resumed = smtp_server.counts() - before
    assert sorted(resumed) == sorted(addresses[21:]) and set(resumed.values()) == {1}
    with workspace_ledger(ws) as ledger:
        assert ledger.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        indexes = {
            r[0] for r in ledger.execute("SELECT name FROM sqlite_master WHERE type='index'")
        }
        assert "deliveries_by_state" not in indexes
