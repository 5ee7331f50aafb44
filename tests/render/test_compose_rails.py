"""Re-composing an edition that was sent or approved (issue 15, item 4): compose refuses
unless --force and then says what it undid; send's hint and schedule list speak of the
right draft; archive publishes only what readers received."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from conftest import Runner
from schedule_helpers import compose_draft, set_schedules, weekly

FIRST = ("articles/heatwave-elderly-care.md", "articles/kyoto-crafts-successors.md")
SECOND = ("articles/yen-interest-rates-households.md",)


def _compose(run: Runner, articles: tuple[str, ...], *extra: str) -> object:
    return run("compose", *articles, "--edition", "2026-W49", *extra)


def _draft_files(workspace: Path) -> dict[str, bytes]:
    folder = workspace / "drafts" / "2026-W49"
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_compose_refuses_to_replace_a_sent_edition(workspace: Path, run: Runner) -> None:
    assert _compose(run, FIRST).exit_code == 0
    sent = run("send", "2026-W49", "--list", "weekly", "--yes")
    assert sent.exit_code == 0, sent.output
    before = _draft_files(workspace)
    mailed_hash = json.loads(before["edition.json"])["content_hash"]

    again = _compose(run, SECOND)
    assert (again.exit_code, again.output) == (
        1,
        "Error: drafts/2026-W49 was already sent to weekly (31 sent): composing it again would"
        " replace what readers received\n"
        "Hint: compose the new content as a new edition (--edition), or add --force to replace"
        " the draft anyway\n",
    )
    assert _draft_files(workspace) == before

    # The same content again is harmless: nothing to refuse.
    same = _compose(run, FIRST)
    assert same.exit_code == 0, same.output

    forced = _compose(run, SECOND, "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.output.splitlines()[-1] == (
        "Warning: drafts/2026-W49 was already sent to weekly (31 sent); those readers keep"
        " the old version, and the archive keeps what was mailed."
    )

    # The archive does not publish what nobody received.
    archived = run("archive", "2026-W49")
    assert (archived.exit_code, archived.output) == (
        1,
        "Error: drafts/2026-W49 changed after it was sent to weekly (31 sent): the archive"
        " publishes only what readers received\n"
        "Hint: restore the draft that was sent, or send the new content as a new edition\n",
    )
    archived_meta = workspace / "archive" / "2026-W49" / "edition.json"
    assert json.loads(archived_meta.read_text(encoding="utf-8"))["content_hash"] == mailed_hash

    # send's refusal of the changed draft does not speak of an approval that never was.
    resend = run("send", "2026-W49", "--list", "weekly", "--yes")
    assert resend.exit_code == 1
    assert resend.output.endswith(
        "Hint: send the changed draft as a new edition (compose --edition NEW), or restore the"
        " draft that was sent\n"
    )
    assert "approved" not in resend.output


def test_archive_refuses_a_draft_never_sent(workspace: Path, run: Runner) -> None:
    assert _compose(run, FIRST).exit_code == 0
    result = run("archive", "2026-W49")
    assert (result.exit_code, result.output) == (
        1,
        "Error: drafts/2026-W49 was never sent to a list: the archive publishes only what"
        " readers received\n"
        "Hint: send it ('digest-mail send 2026-W49 --list NAME'); send and run-due publish the"
        " archive when the campaign completes\n",
    )
    assert not (workspace / "archive").exists()


def test_compose_refuses_to_replace_an_approved_draft_and_force_says_what_it_withdrew(
    workspace: Path, run: Runner
) -> None:
    assert _compose(run, FIRST).exit_code == 0
    assert run("approve", "2026-W49").exit_code == 0
    again = _compose(run, SECOND)
    assert again.exit_code == 1
    lines = again.output.splitlines()
    assert lines[0].startswith(f"Error: drafts/2026-W49 is approved (by {getpass.getuser()} at ")
    assert lines[0].endswith("): composing it again would withdraw that approval")
    assert lines[1] == (
        "Hint: add --force to replace it (then approve the new version), or compose another"
        " --edition"
    )

    forced = _compose(run, SECOND, "--force")
    assert forced.exit_code == 0, forced.output
    last = forced.output.splitlines()[-1]
    assert last.startswith(
        f"Withdrew the approval of drafts/2026-W49 (approved by {getpass.getuser()} at "
    )
    assert last.endswith("): approve the new version to schedule it.")
    listed = run("schedule", "list", "--now", "2026-11-25T21:00:00Z")
    assert "sends nothing: no approved edition; drafts/2026-W49 changed after approval;" in (
        listed.output
    )
    # The approval pins content that is gone: composing once more withdraws nothing.
    third = _compose(run, ("articles/diet-election-reform.md",))
    assert third.exit_code == 0, third.output
    assert "Withdrew" not in third.output
    # Back to the approved content: the approval counts again.
    back = _compose(run, FIRST)
    assert back.exit_code == 0, back.output
    assert "sends 2026-W49\n" in run("schedule", "list", "--now", "2026-11-25T21:00:00Z").output


def test_schedule_list_speaks_of_the_newest_edition_that_changed(
    workspace: Path, run: Runner
) -> None:
    import datetime as dt

    set_schedules(workspace, weekly())
    w48 = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界", now=w48)
    assert run("approve", "2026-W48").exit_code == 0
    assert run("send", "2026-W48", "--list", "weekly", "--yes").exit_code == 0
    w49 = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    compose_draft(workspace, "2026-W49", title="京都の伝統工芸と後継者", now=w49)
    assert run("approve", "2026-W49").exit_code == 0
    compose_draft(workspace, "2026-W49", title="円金利の上昇と家計", now=w49, force=True)
    listed = run("schedule", "list", "--now", "2026-12-01T21:00:00Z")
    assert (
        "sends nothing: drafts/2026-W49 changed after approval; approve it again; the newest"
        " approved edition 2026-W48 was already sent to weekly\n"
    ) in listed.output
