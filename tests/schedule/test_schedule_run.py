"""schedule run-due: a slot is claimed once, sent once, skipped when late or unapproved,
and resumed after the process sending it died. Clocks come from --now; nothing sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest_mail.audience.csvfiles import scan_list
from digest_mail.audience.rows import Recipient
from digest_mail.ledger.schedule_runs import claim_slot, list_runs
from ledger_rows import child_env, workspace_ledger
from schedule_helpers import (
    compose_draft,
    outbox_messages,
    ran_before,
    set_schedules,
    weekly,
    workspace_of,
)
from smtpserver import SmtpServer

SLOT = "2026-11-29T23:00:00+00:00"  # Monday 2026-11-30 08:00 in Tokyo
SLOT_LINE = "weekly: 2026-11-30 08:00 JST (2026-11-29T23:00:00+00:00)"


def subscribed(root: Path, name: str) -> list[str]:
    return [
        r.email
        for r in scan_list(root / "subscribers" / f"{name}.csv")
        if isinstance(r, Recipient) and r.status == "subscribed"
    ]


def runs(root: Path) -> list[tuple[str, str, str | None]]:
    with workspace_ledger(root) as ledger:
        return [(r.slot, r.state, r.edition) for r in list_runs(ledger, "weekly")]


def approved(root: Path, run, edition: str = "2026-W48") -> None:
    compose_draft(root, edition, title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    assert run("approve", edition).exit_code == 0


def test_due_slot_sends_the_approved_edition_once(workspace: Path, run) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    first = run("schedule", "run-due", "--now", "2026-11-30T08:05:00+09:00")
    assert first.exit_code == 0, first.output
    assert first.output.startswith(f"{SLOT_LINE}: sent: sent 2026-W48 to weekly: 31 sent,")
    again = run("schedule", "run-due", "--now", "2026-11-30T08:06:00+09:00")
    assert again.output.startswith(f"{SLOT_LINE}: done: already sent (2026-W48)")
    messages = outbox_messages(workspace)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(
        subscribed(workspace, "weekly")
    )
    assert {m["Subject"] for m in messages} == {"Chrysanthemum Digest 2026-W48 今週の注目記事"}
    assert runs(workspace) == [(SLOT, "sent", "2026-W48")]
    # Sent to this list: the next slot has nothing new to send.
    listed = run("schedule", "list", "--now", "2026-11-30T09:00:00+09:00")
    assert "sends nothing: the newest approved edition 2026-W48 was already sent to weekly" in (
        listed.output
    )


def test_run_due_json(workspace: Path, run) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    result = run("schedule", "run-due", "--now", "2026-11-29T23:00:00Z", "--json")
    (outcome,) = json.loads(result.output)
    assert outcome["slot"] == SLOT and outcome["slot_local"] == "2026-11-30T08:00:00+09:00"
    assert (outcome["action"], outcome["state"], outcome["edition"]) == ("sent", "sent", "2026-W48")
    assert outcome["campaign_id"] == "2026-W48/weekly"
    assert outcome["report"]["sent"] == 31 and outcome["report"]["complete"] is True


def test_no_approved_draft_skips_and_notifies_staff(workspace: Path, run) -> None:
    set_schedules(workspace, weekly())
    compose_draft(workspace, "2026-W48", title="円安と金利、家計への影響")  # composed, not approved
    result = run("schedule", "run-due", "--now", "2026-11-30T08:00:30+09:00")
    assert result.exit_code == 0
    assert result.output == (
        f"{SLOT_LINE}: skipped: nothing sent: no approved edition; notice sent to staff (3)\n"
    )
    (notice,) = outbox_messages(workspace)
    assert [a.addr_spec for a in notice["To"].addresses] == subscribed(workspace, "staff")
    assert notice["Subject"] == (
        "[digest-mail] 配信スケジュール「weekly」: 承認済みの号がないため送信しませんでした"
    )
    body = notice.get_content()
    assert (
        "2026年11月30日(月) 08:00 JST の配信枠で、送信できる承認済みの号がありませんでした。"
        in body
    )
    assert "理由: 承認済みの号がありません。\r\n" in body
    assert "次の配信枠: 2026年12月07日(月) 08:00 JST" in body
    assert notice["Auto-Submitted"] == "auto-generated"
    assert runs(workspace) == [(SLOT, "skipped", None)]
    # Once recorded, a later run neither sends nor notifies again.
    again = run("schedule", "run-due", "--now", "2026-11-30T09:00:00+09:00")
    assert again.output.startswith(f"{SLOT_LINE}: done: already skipped: nothing sent")
    assert len(outbox_messages(workspace)) == 1


def test_changed_draft_is_not_sent_and_staff_are_told_why(workspace: Path, run) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    compose_draft(workspace, "2026-W48", title="書き直した記事: 京都の伝統工芸", force=True)
    result = run("schedule", "run-due", "--now", SLOT)
    assert result.output == (
        f"{SLOT_LINE}: skipped: nothing sent: no approved edition; drafts/2026-W48 changed "
        "after approval; approve it again; notice sent to staff (3)\n"
    )
    (notice,) = outbox_messages(workspace)
    assert (
        "理由: 承認済みの号がありません。"
        " drafts/2026-W48 は承認後に変更されました。もう一度承認してください。\r\n"
    ) in notice.get_content()


def test_slot_missed_by_7h_with_late_after_6h_is_skipped(workspace: Path, run) -> None:
    set_schedules(workspace, weekly(late_after="6h"))
    ran_before(workspace)
    approved(workspace, run)
    result = run("schedule", "run-due", "--now", "2026-11-30T15:00:00+09:00")
    assert result.exit_code == 0
    assert result.output == (
        f"{SLOT_LINE}: skipped: missed by 7h (late_after = 6h); not sent late\n"
    )
    assert outbox_messages(workspace) == []
    assert runs(workspace)[1:] == [(SLOT, "skipped", None)]
    # Within late_after it would have gone: 5 h 59 m late on the next Monday.
    on_time = run("schedule", "run-due", "--now", "2026-12-07T13:59:00+09:00")
    assert ": sent: sent 2026-W48 to weekly" in on_time.output


def test_only_the_most_recent_due_slot_is_considered(workspace: Path, run) -> None:
    set_schedules(workspace, weekly(late_after="2d"))
    approved(workspace, run)
    # Three Mondays were missed; only the last one (within late_after) is run, once.
    result = run("schedule", "run-due", "--now", "2026-12-15T10:00:00+09:00")
    assert "2026-12-14 08:00 JST" in result.output and ": sent:" in result.output
    assert runs(workspace) == [("2026-12-13T23:00:00+00:00", "sent", "2026-W48")]
    assert len(outbox_messages(workspace)) == 31


def test_claim_is_exactly_once_across_connections(workspace: Path) -> None:
    ws = workspace_of(workspace)
    workspace_ledger(ws).close()  # migrate once, before the race
    slot = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    barrier = threading.Barrier(8)
    won: list[bool] = []

    def contender() -> None:
        with workspace_ledger(ws) as ledger:
            barrier.wait()
            won.append(
                claim_slot(
                    ledger, "weekly", slot, state="claimed", edition="2026-W48", note="", now=slot
                )
            )

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False] * 7 + [True]


def _run_due_process(root: Path, now: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "digest_mail", "schedule", "run-due", "--now", now],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _env(**extra: str) -> dict[str, str]:
    env = child_env()
    env.update(extra)
    return env


def test_two_run_due_processes_for_the_same_slot_send_once(
    workspace: Path, run, ledger_kind: str
) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    processes = [_run_due_process(workspace, SLOT, _env()) for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    lines = sorted(out for out, _ in outputs)
    sent = [line for line in lines if ": sent: sent 2026-W48 to weekly: 31 sent" in line]
    assert len(sent) == 1, lines
    other = next(line for line in lines if line not in sent)
    # The loser either found the slot being worked on or already done; it never sends.
    assert ": busy: " in other or ": done: already sent" in other, other
    received = Counter(m["To"].addresses[0].addr_spec for m in outbox_messages(workspace))
    assert sorted(received) == sorted(subscribed(workspace, "weekly"))
    assert set(received.values()) == {1}
    assert runs(workspace) == [(SLOT, "sent", "2026-W48")]
    # The processes claimed the slot in the test's ledger: on PostgreSQL, no SQLite file.
    assert workspace_of(workspace).ledger_path.exists() == (ledger_kind == "sqlite")


def test_interrupted_scheduled_send_resumes_without_duplicates(
    workspace: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    server = SmtpServer().start()
    try:
        accept_first = 5
        stalled = threading.Event()
        release = threading.Event()
        seen = 0

        def data_reply(envelope: object) -> str | None:
            # The sixth message hangs until its sender is dead: it was in flight.
            nonlocal seen
            seen += 1
            if seen <= accept_first:
                return None
            stalled.set()
            release.wait(60)
            return "451 4.3.0 the client went away"

        server.handler.data_reply = data_reply
        env = _env(DIGEST_MAIL_SMTP_URL=server.url, DIGEST_MAIL_SMTP_CONCURRENCY="1")
        process = _run_due_process(workspace, SLOT, env)
        assert stalled.wait(120), process.communicate(timeout=5)
        os.kill(process.pid, signal.SIGKILL)  # the machine lost power mid-send
        process.communicate(timeout=30)
        release.set()
        server.handler.data_reply = None
        assert runs(workspace) == [(SLOT, "sending", "2026-W48")]
        first_run = server.counts()
        assert sum(first_run.values()) == accept_first

        for key, value in env.items():
            if key.startswith("DIGEST_MAIL_"):
                monkeypatch.setenv(key, value)
        resumed = run("schedule", "run-due", "--now", "2026-11-30T08:01:00+09:00", "--json")
        (outcome,) = json.loads(resumed.output)
        assert outcome["action"] == "sent", outcome
        assert outcome["message"].startswith("resumed and sent 2026-W48 to weekly")
        report = outcome["report"]
        counts = server.counts()
        everyone = {a.lower() for a in subscribed(workspace, "weekly")}
        assert set(counts.values()) == {1}, "somebody received the edition twice"
        # Those in flight when the process died are uncertain: resending is an explicit
        # choice ('send --resend-uncertain'), so together they cover the list exactly.
        uncertain = {a.lower() for a in report["uncertain_addresses"]}
        assert report["uncertain"] >= 1
        assert set(counts) | uncertain == everyone
        assert set(first_run) <= set(counts)
        assert not (set(counts) - set(first_run)) & uncertain
        assert runs(workspace) == [(SLOT, "sent", "2026-W48")]
    finally:
        release.set()
        server.stop()


def test_a_relay_that_is_down_stops_the_slot_with_3_and_the_next_run_due_resumes_it(
    workspace: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    with monkeypatch.context() as patch:
        # Nothing listens on port 1 of the loopback: the relay is down.
        patch.setenv("DIGEST_MAIL_SMTP_URL", "smtp://127.0.0.1:1")
        failed = run("schedule", "run-due", "--now", "2026-11-30T08:00:10+09:00")
    assert failed.exit_code == 3  # stopped, as 'send' through a relay that is down
    assert failed.output.startswith(f"{SLOT_LINE}: failed: 2026-W48 to weekly failed: ")
    assert failed.output.endswith("; run-due retries until 2026-11-30T05:00:00+00:00\n")
    assert runs(workspace) == [(SLOT, "failed", "2026-W48")]
    resumed = run("schedule", "run-due", "--now", "2026-11-30T08:01:00+09:00")
    assert resumed.exit_code == 0
    assert resumed.output.startswith(f"{SLOT_LINE}: sent: resumed and sent 2026-W48 to weekly")
    assert len(outbox_messages(workspace)) == 31
    listed = run("schedule", "list", "--now", "2026-11-30T09:00:00+09:00")
    assert "sends nothing: the newest approved edition 2026-W48 was already sent" in listed.output
    # Past late_after a failed slot is left alone and says so.
    with monkeypatch.context() as patch:
        patch.setenv("DIGEST_MAIL_SMTP_URL", "smtp://127.0.0.1:1")
        compose_draft(workspace, "2026-W49", title="京都の伝統工芸、後継者不足にどう向き合うか")
        run("approve", "2026-W49")
        run("schedule", "run-due", "--now", "2026-12-07T08:00:00+09:00")
    late = run("schedule", "run-due", "--now", "2026-12-07T14:01:00+09:00")
    assert late.output.startswith(
        "weekly: 2026-12-07 08:00 JST (2026-12-06T23:00:00+00:00): done: failed earlier and now "
        "past late_after, not retried: failed: "
    )


def test_schedule_with_a_fixed_edition_sends_only_that_one(workspace: Path, run) -> None:
    set_schedules(workspace, weekly(edition="2026-W47"))
    approved(workspace, run, "2026-W48")
    skipped = run("schedule", "run-due", "--now", SLOT)
    assert skipped.output.startswith(
        f"{SLOT_LINE}: skipped: nothing sent: edition 2026-W47 is not approved;"
    )
    approved(workspace, run, "2026-W47")
    sent = run("schedule", "run-due", "--now", "2026-12-06T23:00:00Z")
    assert ": sent: sent 2026-W47 to weekly: 31 sent," in sent.output


def test_the_first_run_due_does_not_report_slots_before_it_as_missed(workspace: Path, run) -> None:
    # The editor's trap: a schedule added on Tuesday; its first run-due said Monday's
    # slot was "missed by 1d 2h" although the schedule did not exist then.
    set_schedules(workspace, weekly(late_after="6h"))
    approved(workspace, run)
    first = run("schedule", "run-due", "--now", "2026-12-01T10:00:00+09:00")
    assert (first.exit_code, first.output) == (
        0,
        f"{SLOT_LINE}: skipped: came before this schedule's first run-due, so nothing was due"
        " yet; the first slot it sends is 2026-12-07 08:00 JST\n",
    )
    assert "missed" not in run("schedule", "list", "--now", "2026-12-01T10:00:00+09:00").output
    assert outbox_messages(workspace) == []
    # From then on the schedule is running: a slot left late is a missed send.
    late = run("schedule", "run-due", "--now", "2026-12-07T15:00:00+09:00")
    assert late.output.endswith(": skipped: missed by 7h (late_after = 6h); not sent late\n")


def test_a_deferred_reader_keeps_the_slot_open_until_a_later_run_due_delivers(
    workspace: Path, run, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    everyone = subscribed(workspace, "weekly")
    busy = everyone[3]
    smtp_server.reply_for(busy, "450 4.2.1 Mailbox busy", times=None)
    monkeypatch.setenv("DIGEST_MAIL_SMTP_URL", smtp_server.url)
    monkeypatch.setenv("DIGEST_MAIL_SMTP_RETRY_FOR", "0s")  # deferred at the first 450
    first = run("schedule", "run-due", "--now", "2026-11-30T08:00:10+09:00")
    assert first.exit_code == 4, first.output
    assert first.output.startswith(
        f"{SLOT_LINE}: incomplete: 2026-W48 to weekly is not finished: "
        f"{len(everyone) - 1} sent, 1 deferred, 0 failed"
    )
    assert first.output.endswith("; the next run-due resumes it\n")
    # Not 'sent': the slot stays open, so the schedule itself comes back for the reader.
    assert runs(workspace) == [(SLOT, "sending", "2026-W48")]

    smtp_server.handler.always.clear()
    second = run("schedule", "run-due", "--now", "2026-11-30T08:05:00+09:00")
    assert second.exit_code == 0, second.output
    assert second.output.startswith(f"{SLOT_LINE}: sent: resumed and sent 2026-W48 to weekly")
    counts = smtp_server.counts()
    assert set(counts) == {a.lower() for a in everyone}
    assert set(counts.values()) == {1}
    assert runs(workspace) == [(SLOT, "sent", "2026-W48")]
