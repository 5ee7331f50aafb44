"""One campaign to several lists, each address once; and never an edition twice to one
address through two campaigns. Through the CLI against a real aiosmtpd, and run-due with
a schedule of two lists through the capture outbox."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import FakeClock, Runner
from delivery_draft import SAMPLE_DRAFT, write_draft_folder
from digest_mail.config import find_workspace
from digest_mail.delivery.campaign import run_campaign
from digest_mail.ledger.campaigns import sent_editions
from digest_mail.ledger.migrations import MIGRATIONS
from digest_mail.ledger.suppressions import suppress
from ledger_rows import workspace_ledger
from schedule_helpers import compose_draft, outbox_messages, set_schedules, write_list
from smtpserver import SmtpServer

SECRET = "lists-test-secret-0123456789"
WEEKLY = [("yamada@example.jp", "山田 太郎"), ("Suzuki@Example.jp", "鈴木 花子")]
# suzuki is on both lists (another spelling of the same address); ito only here.
PARTNERS = [("suzuki@example.jp", "鈴木 花子"), ("ito@example.jp", "伊藤 健")]


@pytest.fixture
def env(workspace: Path, smtp_server: SmtpServer) -> dict[str, str]:
    write_draft_folder(workspace)
    write_list(workspace, "weekly", WEEKLY)
    write_list(workspace, "partners", PARTNERS)
    return {"DIGEST_MAIL_SMTP_URL": smtp_server.url, "DIGEST_MAIL_SECRET": SECRET}


def test_two_lists_one_campaign_each_address_once(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    dry = run("send", "2026-W48", "--list", "weekly", "--list", "partners", "--dry-run", env=env)
    assert (dry.exit_code, dry.output) == (
        0,
        f"Would send 2026-W48 to 3 of lists partners, weekly via SMTP relay {smtp_server.url} "
        "(0 already sent, 0 suppressed, 0 skipped-invalid)\n",
    )
    sent = run("send", "2026-W48", "--list", "weekly", "--list", "partners", "--yes", env=env)
    assert sent.exit_code == 0, sent.output
    assert sent.output.splitlines()[0] == (
        "Sent 2026-W48 to partners+weekly: 3 sent, 0 deferred, 0 failed, 0 suppressed, "
        "0 skipped-invalid"
    )
    assert sorted(smtp_server.counts().items()) == [
        ("ito@example.jp", 1),
        ("suzuki@example.jp", 1),
        ("yamada@example.jp", 1),
    ]
    # The same lists in another order are the same campaign.
    again = run("send", "2026-W48", "--list", "partners", "--list", "weekly", "--yes", env=env)
    assert again.exit_code == 0, again.output
    assert again.output.startswith(
        "Nothing left to send: 2026-W48 to partners+weekly is complete (3 sent,"
    )
    status = run("status", "2026-W48/weekly+partners", "--json", env=env)
    (data,) = json.loads(status.output)
    assert (data["lists"], data["total"], data["resume"]) == (
        ["partners", "weekly"],
        3,
        "digest-mail send 2026-W48 --list partners --list weekly",
    )
    # Each list on its own now: everyone on it had the edition from the joint campaign.
    alone = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert (alone.exit_code, alone.output.splitlines()[0]) == (
        0,
        "Nothing left to send: 2026-W48 to weekly is complete (0 sent, 0 deferred, 0 failed, "
        "0 suppressed, 0 skipped-invalid, 2 had it from another campaign)",
    )
    assert len(smtp_server.received) == 3
    assert run("status", "2026-W48", env=env).output == (
        "2026-W48/partners+weekly (campaign, finished): 3 recipients\n"
        "  lists partners, weekly, each address once\n"
        "  3 sent, 0 queued, 0 deferred, 0 failed, 0 suppressed, 0 skipped-invalid, "
        "0 uncertain\n"
        "2026-W48/weekly (campaign, finished): 0 recipients\n"
        "  2 left out: they had it from another campaign\n"
        "  0 sent, 0 queued, 0 deferred, 0 failed, 0 suppressed, 0 skipped-invalid, "
        "0 uncertain\n"
    )
    with workspace_ledger(workspace) as ledger:
        assert sent_editions(ledger, ["partners", "weekly"]) == {"2026-W48"}
        assert sent_editions(ledger, "weekly") == {"2026-W48"}


def test_a_reader_who_had_the_edition_from_one_list_does_not_get_it_again(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    first = run("send", "2026-W48", "--list", "weekly", "--yes", env=env)
    assert first.exit_code == 0, first.output
    dry = run("send", "2026-W48", "--list", "weekly", "--list", "partners", "--dry-run", env=env)
    assert dry.output == (
        f"Would send 2026-W48 to 1 of lists partners, weekly via SMTP relay {smtp_server.url} "
        "(0 already sent, 0 suppressed, 0 skipped-invalid, 2 had it from another campaign)\n"
    )
    both = run("send", "2026-W48", "--list", "weekly", "--list", "partners", "--yes", env=env)
    assert both.exit_code == 0, both.output
    assert both.output.splitlines()[0] == (
        "Sent 2026-W48 to partners+weekly: 1 sent, 0 deferred, 0 failed, 0 suppressed, "
        "0 skipped-invalid, 2 had it from another campaign"
    )
    assert sorted(smtp_server.counts().items()) == [
        ("ito@example.jp", 1),
        ("suzuki@example.jp", 1),
        ("yamada@example.jp", 1),
    ]
    with workspace_ledger(workspace) as ledger:
        assert sent_editions(ledger, "partners") == {"2026-W48"}


def test_a_misspelt_list_among_several_is_refused_before_anything(
    workspace: Path, env: dict[str, str], run: Runner, smtp_server: SmtpServer
) -> None:
    result = run("send", "2026-W48", "--list", "weekly", "--list", "partnres", "--yes", env=env)
    assert (result.exit_code, result.output) == (
        1,
        "Error: no list 'partnres': subscribers/partnres.csv does not exist (lists: partners, "
        "staff, weekly)\n"
        "Hint: Did you mean 'partners'?\n",
    )
    assert smtp_server.received == []


def test_a_schedule_of_two_lists_sends_each_address_once(workspace: Path, run: Runner) -> None:
    write_list(workspace, "weekly", WEEKLY)
    write_list(workspace, "partners", PARTNERS)
    set_schedules(
        workspace,
        '[[schedule]]\nname = "weekly"\nlist = ["weekly", "partners"]\ncron = "0 8 * * MON"\n'
        'timezone = "Asia/Tokyo"\n',
    )
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    assert run("approve", "2026-W48").exit_code == 0
    due = run("schedule", "run-due", "--now", "2026-11-30T08:05:00+09:00")
    assert due.exit_code == 0, due.output
    assert due.output.startswith(
        "weekly: 2026-11-30 08:00 JST (2026-11-29T23:00:00+00:00): sent: sent 2026-W48 to "
        "partners+weekly: 3 sent,"
    )
    received = sorted(m["To"].addresses[0].addr_spec.lower() for m in outbox_messages(workspace))
    assert received == ["ito@example.jp", "suzuki@example.jp", "yamada@example.jp"]
    listed = run("schedule", "list", "--now", "2026-11-30T09:00:00+09:00")
    assert "the newest approved edition 2026-W48 was already sent to partners+weekly" in (
        listed.output
    )


def test_a_schedule_list_that_is_neither_a_name_nor_names_is_refused(
    workspace: Path, run: Runner
) -> None:
    set_schedules(workspace, '[[schedule]]\nname = "weekly"\nlist = []\ncron = "0 8 * * MON"\n')
    result = run("schedule", "list")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {workspace / 'digest-mail.toml'}: schedule 'weekly'.list: expected a name or "
        "an array of names, got []\n"
    )


@pytest.mark.sqlite_only  # the file's PRAGMA user_version, rewound by hand
def test_a_one_list_campaign_from_before_migration_6_resumes(
    workspace: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_list(workspace, "weekly", WEEKLY)
    monkeypatch.setenv("DIGEST_MAIL_SMTP_URL", smtp_server.url)
    monkeypatch.setenv("DIGEST_MAIL_SECRET", SECRET)
    ws = find_workspace(workspace)
    run_campaign(ws, SAMPLE_DRAFT, "weekly", clock=FakeClock())
    # The ledger as version 5 left it: one row sent, one still queued.
    with sqlite3.connect(ws.ledger_path) as db:
        db.execute("UPDATE deliveries SET state = 'queued' WHERE seq = 2")
        db.execute("UPDATE campaigns SET state = 'stopped'")
        db.execute("DROP TABLE campaign_lists")
        db.execute("ALTER TABLE campaigns DROP COLUMN already_received")
        db.execute("DROP TABLE senders")
        db.execute("ALTER TABLE deliveries DROP COLUMN sender")
        db.execute("PRAGMA user_version = 5")
    report = run_campaign(ws, SAMPLE_DRAFT, "weekly", clock=FakeClock())
    assert (report.sent, report.sent_this_run, report.complete) == (2, 1, True)
    assert report.lists == ("weekly",)
    assert report.resume_command() == "digest-mail send 2026-W48 --list weekly"
    assert smtp_server.counts()["suzuki@example.jp"] == 2  # the row put back to queued
    with workspace_ledger(ws) as ledger:
        assert ledger.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert sent_editions(ledger, "weekly") == {"2026-W48"}


def test_a_streamed_snapshot_of_two_lists_sends_each_address_once(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from digest_mail.delivery import snapshot
    from digest_mail.delivery.report import NothingToSend
    from test_send import write_list as write_numbered

    # In-process, no server thread: the send forks its snapshot writer as the CLI does.
    monkeypatch.setenv("DIGEST_MAIL_SECRET", SECRET)
    assert threading.active_count() == 1, "this test needs a process that may fork"
    forked: list[int] = []
    real_init = snapshot.SnapshotWriter.__init__

    def init(self: snapshot.SnapshotWriter, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        forked.append(self.pid)

    monkeypatch.setattr(snapshot.SnapshotWriter, "__init__", init)
    everyone = write_numbered(workspace, "readers", 900)
    lines = (workspace / "subscribers" / "readers.csv").read_text(encoding="utf-8").splitlines()
    (workspace / "subscribers" / "first.csv").write_text(
        "\n".join(lines[:601]) + "\n", encoding="utf-8"
    )
    # The second list overlaps the first by 300 rows, written in upper case.
    (workspace / "subscribers" / "second.csv").write_text(
        "\n".join([lines[0], *(line.upper() for line in lines[301:601]), *lines[601:]]) + "\n",
        encoding="utf-8",
    )
    ws = find_workspace(workspace)
    report = run_campaign(ws, SAMPLE_DRAFT, ["second", "first"], clock=FakeClock())
    assert len(forked) == 1
    assert (report.campaign_id, report.total, report.sent, report.complete) == (
        "2026-W48/first+second",
        900,
        900,
        True,
    )
    received = sorted(m["To"].addresses[0].addr_spec.lower() for m in outbox_messages(workspace))
    assert received == sorted(everyone)

    # A list whose every reader is suppressed, streamed too: an error, nothing recorded.
    with workspace_ledger(ws) as ledger:
        for address in everyone[:600]:
            suppress(ledger, address, reason="unsubscribed", source="test")
    with pytest.raises(NothingToSend) as info:
        run_campaign(ws, replace(SAMPLE_DRAFT, id="2026-W49"), "first")
    assert str(info.value) == (
        "nothing to send: all 600 readers of list first are suppressed (unsubscribed or bounced)"
    )
    assert len(forked) == 2
    with workspace_ledger(ws) as ledger:
        ids = [r[0] for r in ledger.execute("SELECT id FROM campaigns ORDER BY id")]
    assert ids == ["2026-W48/first+second"]


def test_a_schedule_naming_a_misspelt_list_is_flagged_before_its_run(
    workspace: Path, run: Runner
) -> None:
    write_list(workspace, "partners", PARTNERS)
    set_schedules(
        workspace,
        '[[schedule]]\nname = "weekly"\nlist = ["weekly", "partnres"]\ncron = "0 8 * * MON"\n',
    )
    listed = run("schedule", "list", "--now", "2026-11-30T09:00:00+09:00")
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[-1] == (
        "  warning: there is no list 'partnres': the run will fail (did you mean 'partners'?)"
    )
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    assert run("approve", "2026-W48").exit_code == 0
    due = run("schedule", "run-due", "--now", "2026-11-30T08:05:00+09:00")
    assert due.exit_code == 1
    assert (
        "2026-W48 to partnres+weekly failed: no list 'partnres': subscribers/partnres.csv does "
        "not exist (lists: partners, staff, weekly) (Did you mean 'partners'?)"
    ) in due.output
    assert outbox_messages(workspace) == []


def test_a_forked_snapshot_holds_the_editions_turn_until_it_is_written(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sends of one edition at once must not both take an address: their snapshots
    take turns, and a forked writer keeps the turn until its last row is in."""
    import threading

    from digest_mail.delivery import snapshot
    from digest_mail.ledger.db import open_ledger
    from test_send import write_list as write_numbered

    monkeypatch.setenv("DIGEST_MAIL_SECRET", SECRET)
    assert threading.active_count() == 1, "this test needs a process that may fork"
    writers: list[snapshot.SnapshotWriter] = []
    real_init = snapshot.SnapshotWriter.__init__

    def init(self: snapshot.SnapshotWriter, *args: object, **kwargs: object) -> None:
        real_init(self, *args, **kwargs)  # type: ignore[arg-type]
        writers.append(self)

    monkeypatch.setattr(snapshot.SnapshotWriter, "__init__", init)
    # A hundred readers, then many rows that cost the writer a full address check each:
    # the first messages go out while the writer is still at work.
    write_numbered(workspace, "readers", 100, extra="".join(f"bad{i}@@x,\n" for i in range(20000)))
    ws = find_workspace(workspace)
    # The turn is a session lock of the ledger: a flock file, or a PostgreSQL advisory lock.
    watcher = open_ledger(ws)
    seen: list[tuple[bool, bool]] = []

    def turn_is_free() -> bool:
        return not watcher.is_locked("edition:2026-W48")

    def progress(report: object) -> None:
        seen.append((writers[0].done, turn_is_free()))

    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock(), progress=progress)
    assert report.sent == 100 and len(writers) == 1
    assert all(free for done, free in seen if done), seen
    assert (False, False) in seen, seen  # a look while the writer was still at work
    assert turn_is_free()
    watcher.close()
