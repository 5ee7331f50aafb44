"""approve: pinned to the draft's content hash; recomposing withdraws it, and commands say so."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from schedule_helpers import compose_draft, set_schedules, weekly


def test_approve_records_hash_who_and_when(workspace: Path, run) -> None:
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    result = run("approve", "2026-W48", "--json")
    assert result.exit_code == 0, result.output
    state = json.loads(result.output)
    edition = json.loads((workspace / "drafts" / "2026-W48" / "edition.json").read_text("utf-8"))
    assert state["status"] == "approved"
    assert state["content_hash"] == edition["content_hash"]
    assert state["approved_by"] == getpass.getuser()
    assert state["approved_at"].endswith("+00:00")
    assert state["withdrawn_at"] is None


def test_approve_output_and_approving_twice(workspace: Path, run) -> None:
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    digest = json.loads((workspace / "drafts/2026-W48/edition.json").read_text("utf-8"))[
        "content_hash"
    ]
    first = run("approve", "drafts/2026-W48")
    assert first.exit_code == 0
    lines = first.output.splitlines()
    assert lines[0] == f"Approved drafts/2026-W48 (content {digest[:12]})."
    # The sample workspace's weekly schedule: when it goes out next.
    assert lines[1].startswith("Schedule weekly: next run ")
    assert lines[1].endswith(" UTC) sends 2026-W48 to weekly.")
    assert len(lines) == 2
    second = run("approve", "2026-W48")
    assert second.exit_code == 0
    assert second.output.startswith(f"drafts/2026-W48 approved by {getpass.getuser()} at ")
    assert f"(content {digest[:12]}); nothing to do.\n" in second.output


def test_recomposing_after_approval_withdraws_it_and_commands_say_so(workspace: Path, run) -> None:
    set_schedules(workspace, weekly())
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    assert run("approve", "2026-W48").exit_code == 0
    listed = run("schedule", "list", "--now", "2026-11-25T21:00:00Z")
    assert "  2026-11-30 Mon 08:00 JST = 2026-11-29 23:00 UTC  sends 2026-W48\n" in listed.output

    compose_draft(workspace, "2026-W48", title="円金利の上昇と家計への影響", force=True)
    listed = run("schedule", "list", "--now", "2026-11-25T21:00:00Z")
    assert (
        "  2026-11-30 Mon 08:00 JST = 2026-11-29 23:00 UTC  sends nothing: no approved edition; "
        "drafts/2026-W48 changed after approval; approve it again\n"
    ) in listed.output

    again = run("approve", "2026-W48")
    assert again.exit_code == 0
    assert again.output.splitlines()[0] == (
        "drafts/2026-W48 changed after its earlier approval; approved the new version."
    )
    listed = run("schedule", "list", "--now", "2026-11-25T21:00:00Z")
    assert "sends 2026-W48\n" in listed.output


def test_withdraw(workspace: Path, run) -> None:
    set_schedules(workspace, weekly())
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    run("approve", "2026-W48")
    result = run("approve", "--withdraw", "2026-W48")
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "Withdrew the approval of drafts/2026-W48; no schedule will send it.",
        result.output.splitlines()[1],
    ]
    assert result.output.splitlines()[1].endswith(" UTC) sends nothing: no approved edition.")
    listed = run("schedule", "list", "--now", "2026-11-25T21:00:00Z")
    assert "sends nothing: no approved edition\n" in listed.output
    again = run("approve", "--withdraw", "2026-W48")
    assert again.exit_code == 1
    assert again.output == (
        "Error: drafts/2026-W48 is not approved, so there is nothing to withdraw\n"
        "Hint: see 'digest-mail schedule list' for what the schedules would send\n"
    )


def test_newest_approved_draft_is_chosen(workspace: Path, run) -> None:
    import datetime as dt

    set_schedules(workspace, weekly())
    compose_draft(
        workspace,
        "2026-W47",
        title="京都の伝統工芸と後継者",
        now=dt.datetime(2026, 11, 16, tzinfo=dt.UTC),
    )
    compose_draft(
        workspace,
        "2026-W48",
        title="トランプ再選で変わる世界",
        now=dt.datetime(2026, 11, 23, tzinfo=dt.UTC),
    )
    run("approve", "2026-W48")
    run("approve", "2026-W47")  # approved later, but the older draft
    listed = run("schedule", "list", "--now", "2026-11-25T21:00:00Z")
    assert "sends 2026-W48\n" in listed.output


def test_approving_a_missing_draft_is_one_line(workspace: Path, run) -> None:
    result = run("approve", "2026-W01")
    assert result.exit_code == 1
    assert result.output.startswith("Error: no draft 2026-W01 in drafts/")
