"""Rehearsing the schedule never sends (issue 15, item 1): ``run-due --dry-run`` says
what it would send, to how many, through which relay, and claims nothing; ``--now``
through a relay beyond this machine needs ``--yes``."""

from __future__ import annotations

from pathlib import Path

from conftest import Runner
from digest_mail.ledger.schedule_runs import list_runs
from ledger_rows import workspace_ledger
from schedule_helpers import (
    compose_draft,
    outbox_messages,
    ran_before,
    set_schedules,
    weekly,
    write_list,
)

NOW = "2026-11-30T08:00:30+09:00"
SLOT = "weekly: 2026-11-30 08:00 JST (2026-11-29T23:00:00+00:00)"
RELAY = "smtps://relay.chrysanthemum-digest.jp:465"


def _approved(workspace: Path, run: Runner) -> None:
    set_schedules(workspace, weekly())
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    assert run("approve", "2026-W48").exit_code == 0


def _runs(workspace: Path) -> list[object]:
    with workspace_ledger(workspace) as ledger:
        return list(list_runs(ledger))


def test_dry_run_says_what_would_go_where_and_claims_nothing(workspace: Path, run: Runner) -> None:
    _approved(workspace, run)
    readers = 31  # subscribers/weekly.csv: 32 rows, one unsubscribed
    result = run("schedule", "run-due", "--now", NOW, "--dry-run")
    assert (result.exit_code, result.output) == (
        0,
        f"{SLOT}: would send: 2026-W48 to {readers} of list weekly via capture to "
        f"{workspace / 'outbox'} (nothing leaves this machine) (0 already sent, 0 suppressed)\n"
        "Dry run: no slot claimed, nothing sent.\n",
    )
    assert outbox_messages(workspace) == []
    assert _runs(workspace) == []
    # The slot is still there to be sent for real afterwards.
    sent = run("schedule", "run-due", "--now", NOW)
    assert sent.exit_code == 0, sent.output
    assert f"{SLOT}: sent: sent 2026-W48 to weekly: {readers} sent" in sent.output
    assert len(outbox_messages(workspace)) == readers


def test_dry_run_through_a_real_relay_names_it_and_connects_nowhere(
    workspace: Path, run: Runner
) -> None:
    _approved(workspace, run)
    result = run(
        "schedule", "run-due", "--now", NOW, "--dry-run", env={"DIGEST_MAIL_SMTP_URL": RELAY}
    )
    assert result.exit_code == 0, result.output
    assert f" via SMTP relay {RELAY} (0 already sent, 0 suppressed)\n" in result.output
    assert _runs(workspace) == []


def test_dry_run_of_a_slot_with_nothing_approved_sends_no_notice(
    workspace: Path, run: Runner
) -> None:
    set_schedules(workspace, weekly())
    result = run("schedule", "run-due", "--now", NOW, "--dry-run")
    assert (result.exit_code, result.output) == (
        0,
        f"{SLOT}: would skip: nothing to send: no approved edition (staff list staff would get "
        "a notice)\nDry run: no slot claimed, nothing sent.\n",
    )
    assert outbox_messages(workspace) == []
    assert _runs(workspace) == []


def test_dry_run_of_a_missed_slot_and_of_one_already_sent(workspace: Path, run: Runner) -> None:
    _approved(workspace, run)
    ran_before(workspace)
    late = run("schedule", "run-due", "--now", "2026-11-30T20:00:00+09:00", "--dry-run")
    assert late.output == (
        f"{SLOT}: would skip: missed by 12h (late_after = 6h); not sent late\n"
        "Dry run: no slot claimed, nothing sent.\n"
    )
    assert run("schedule", "run-due", "--now", NOW).exit_code == 0
    again = run("schedule", "run-due", "--now", NOW, "--dry-run")
    assert again.exit_code == 0
    assert again.output.startswith(f"{SLOT}: done: already sent (2026-W48): ")


def test_pretending_a_time_through_a_real_relay_needs_yes(workspace: Path, run: Runner) -> None:
    # The editor's trap: --now "pretend it is this time" sent 16 messages and spent the slot.
    _approved(workspace, run)
    result = run("schedule", "run-due", "--now", NOW, env={"DIGEST_MAIL_SMTP_URL": RELAY})
    assert (result.exit_code, result.output) == (
        1,
        f"Error: --now {NOW} would send for real through {RELAY}: readers get the mail\n"
        "Hint: rehearse with --dry-run, or add --yes to send for real\n",
    )
    assert _runs(workspace) == []


def test_pretending_a_time_with_the_capture_outbox_needs_no_yes(
    workspace: Path, run: Runner
) -> None:
    _approved(workspace, run)
    result = run("schedule", "run-due", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{SLOT}: sent: sent 2026-W48 to weekly: 31 sent")


def test_dry_run_to_a_list_with_nobody_says_the_send_would_fail(
    workspace: Path, run: Runner
) -> None:
    write_list(workspace, "empty", [])
    set_schedules(workspace, weekly(list_name="empty"))
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    assert run("approve", "2026-W48").exit_code == 0
    result = run("schedule", "run-due", "--now", NOW, "--dry-run")
    assert (result.exit_code, result.output) == (
        1,
        f"{SLOT}: failed: 2026-W48 to empty would fail: nothing to send: list empty has no"
        " subscribed reader (it is empty) (add readers with 'digest-mail subscribers add empty"
        " ADDRESS', then send again)\n"
        "Dry run: no slot claimed, nothing sent.\n",
    )
    assert _runs(workspace) == []
