"""A list's snapshot is written by a forked child while the first messages already go out.

In-process sends into the capture outbox (no server thread, so the process may fork);
what arrived is parsed back from the Maildir. The faults are real: the child process
exits in the middle of its snapshot, a list is unreadable near its end.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeClock
from delivery_draft import SAMPLE_DRAFT
from digest_mail.config import Workspace, find_workspace
from digest_mail.delivery import snapshot
from digest_mail.delivery.campaign import run_campaign
from digest_mail.delivery.report import SNAPSHOT_UNFINISHED, CampaignError
from digest_mail.delivery.status import campaign_status
from digest_mail.errors import DigestMailError
from digest_mail.ledger.db import Ledger
from ledger_rows import workspace_ledger
from schedule_helpers import outbox_messages
from test_send import write_list

COUNT = 1200  # several of the writer's batches


@pytest.fixture
def ws(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("DIGEST_MAIL_SECRET", "test-secret-0123456789abcdef")
    assert threading.active_count() == 1, "these tests need a process that may fork"
    return find_workspace(workspace)


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the snapshot writers this test's sends forked."""
    pids: list[int] = []
    real_init = snapshot.SnapshotWriter.__init__

    def init(self: snapshot.SnapshotWriter, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        pids.append(self.pid)

    monkeypatch.setattr(snapshot.SnapshotWriter, "__init__", init)
    return pids


def recipients(root: Path) -> Counter[str]:
    return Counter(m["To"].addresses[0].addr_spec for m in outbox_messages(root))


def campaign_row(ws: Workspace) -> Any:
    with workspace_ledger(ws) as ledger:
        return ledger.execute(
            "SELECT state, total, started_at, finished_at, note FROM campaigns "
            "WHERE id = '2026-W48/readers'"
        ).fetchone()


def test_a_streamed_snapshot_reaches_everyone_once_in_list_order(
    ws: Workspace, writers: list[int]
) -> None:
    addresses = write_list(ws.root, "readers", COUNT)
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert len(writers) == 1
    assert (report.total, report.sent, report.sent_this_run) == (COUNT, COUNT, COUNT)
    assert report.complete and report.state == "finished"
    received = recipients(ws.root)
    assert sorted(received) == sorted(addresses) and set(received.values()) == {1}
    row = campaign_row(ws)
    assert (row["state"], row["total"]) == ("finished", COUNT)
    assert row["started_at"] and row["finished_at"]
    with workspace_ledger(ws) as ledger:
        in_order = [
            r[0]
            for r in ledger.execute(
                "SELECT email FROM deliveries WHERE campaign_id = '2026-W48/readers' ORDER BY seq"
            )
        ]
    assert in_order == addresses


def test_a_snapshot_cut_short_is_completed_by_the_next_run_without_doubles(
    ws: Workspace, writers: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    addresses = write_list(ws.root, "readers", COUNT)
    real_snapshot = snapshot.write_snapshot

    def dies_after_one_batch(ledger: Ledger, campaign_id: str, items: Any, **kwargs: Any) -> None:
        told = kwargs["on_commit"]

        def commit() -> None:
            told()  # the sender learns of the first batch …
            os._exit(9)  # … then the writer dies, as under SIGKILL or the OOM killer

        kwargs["on_commit"] = commit
        real_snapshot(ledger, campaign_id, items, **kwargs)

    monkeypatch.setattr(snapshot, "write_snapshot", dies_after_one_batch)
    with pytest.raises(CampaignError) as caught:
        run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert "exit status 9" in caught.value.message
    first_batch = addresses[: snapshot.STREAMED_SNAPSHOT_BATCH]
    # What was committed before the writer died went out, once; nothing else did.
    assert recipients(ws.root) == Counter(first_batch)
    row = campaign_row(ws)
    assert row["state"] == "snapshotting" and row["finished_at"] is None
    assert "exit status 9" in row["note"]
    (status,) = campaign_status(ws, "2026-W48/readers")
    assert (status.state, status.total, status.sent) == ("snapshotting", len(first_batch), 250)
    assert status.stopped == SNAPSHOT_UNFINISHED and not status.complete

    # Before the rerun the list changes: one reader who already has the edition and one
    # who does not yet leave it, a new reader joins.
    gone_sent, gone_unsent = addresses[5], addresses[700]
    path = ws.root / "subscribers" / "readers.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if not line.startswith((gone_sent + ",", gone_unsent + ","))]
    path.write_text("\n".join([*kept, "new.reader@example.jp,新 読者,subscribed,"]) + "\n")

    monkeypatch.setattr(snapshot, "write_snapshot", real_snapshot)
    report = run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert len(writers) == 2
    assert report.complete and report.state == "finished"
    received = recipients(ws.root)
    assert set(received.values()) == {1}, "nobody gets the edition twice"
    assert set(received) == (set(addresses) - {gone_unsent}) | {"new.reader@example.jp"}
    assert report.sent == COUNT  # 250 from the first run, 950 now
    assert report.sent_this_run == COUNT - len(first_batch)


def test_a_list_unreadable_near_its_end_stops_the_send_before_any_message(
    ws: Workspace, writers: list[int]
) -> None:
    # A field past the CSV parser's limit (128 KiB): the parser gives up on the file.
    huge = "x" * 140_000
    write_list(ws.root, "readers", COUNT, extra=f"late@example.jp,{huge},subscribed,\n")
    with pytest.raises(DigestMailError) as caught:
        run_campaign(ws, SAMPLE_DRAFT, "readers", clock=FakeClock())
    assert f"readers.csv:{COUNT + 2}" in str(caught.value)
    assert writers == [] and outbox_messages(ws.root) == []
    assert campaign_row(ws) is None  # no half-made campaign is left behind
