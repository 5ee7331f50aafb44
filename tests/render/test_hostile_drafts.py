"""Drafts edited or copied by hand: an approval pins the bytes that go out (issue 14
item 3), and an edition id read from a file is held to the one id grammar (item 4)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import Runner
from schedule_helpers import compose_draft, outbox_messages, set_schedules, weekly

SLOT = "2026-11-29T23:00:00+00:00"  # Monday 2026-11-30 08:00 in Tokyo
ARTICLE_LINK = "https://chrysanthemum-digest.example.jp/articles/2026-w48"
EDITED_HINT = (
    "Hint: compose it again (digest-mail compose --edition 2026-W48), check it and approve it"
    " again\n"
)
EDITED = (
    "Error: drafts/2026-W48 was changed after compose: its subject, index.html or index.txt"
    " no longer match the content hash in its edition.json\n" + EDITED_HINT
)


def _edit_link(root: Path) -> None:
    page = root / "drafts/2026-W48/index.html"
    html = page.read_text(encoding="utf-8")
    assert ARTICLE_LINK in html
    page.write_text(html.replace(ARTICLE_LINK, "https://evil.example.net/x"), encoding="utf-8")


def test_a_hand_edit_after_approval_is_never_sent(workspace: Path, run: Runner) -> None:
    set_schedules(workspace, weekly())
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    assert run("approve", "2026-W48").exit_code == 0
    _edit_link(workspace)

    listed = run("schedule", "list", "--now", "2026-11-25T21:00:00Z")
    assert (
        "sends nothing: no approved edition; drafts/2026-W48 was edited after compose;"
        " compose and approve it again\n"
    ) in listed.output
    due = run("schedule", "run-due", "--now", SLOT)
    assert due.exit_code == 0
    assert "skipped: nothing sent: no approved edition; drafts/2026-W48 was edited" in due.output
    # Only the staff notice went out, and it says why in Japanese.
    (notice,) = outbox_messages(workspace)
    assert "drafts/2026-W48 は作成後に書き換えられました。" in notice.get_content()

    for args in (
        ("send", "2026-W48", "--list", "weekly", "--yes"),
        ("test-send", "2026-W48"),
        ("approve", "2026-W48"),
    ):
        result = run(*args)
        assert (result.exit_code, result.output) == (1, EDITED), args
    assert len(outbox_messages(workspace)) == 1


def test_a_hand_edit_of_the_subject_in_edition_json_is_refused(
    workspace: Path, run: Runner
) -> None:
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    meta_path = workspace / "drafts/2026-W48/edition.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["subject"] = "今すぐパスワードを更新してください"
    meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    result = run("send", "2026-W48", "--list", "weekly", "--yes")
    assert (result.exit_code, result.output) == (1, EDITED)
    assert outbox_messages(workspace) == []


def test_recomposing_is_the_way_to_change_an_approved_draft(workspace: Path, run: Runner) -> None:
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    assert run("approve", "2026-W48").exit_code == 0
    _edit_link(workspace)
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    assert run("approve", "2026-W48").exit_code == 0
    result = run("send", "2026-W48", "--list", "weekly", "--yes")
    assert result.exit_code == 0, result.output
    assert len(outbox_messages(workspace)) == 31


def _copied_with_id(root: Path, ident: str) -> Path:
    compose_draft(root, "2026-W48", title="トランプ再選で変わる世界")
    copy = root / "drafts/copied"
    shutil.copytree(root / "drafts/2026-W48", copy)
    meta_path = copy / "edition.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["id"] = ident
    meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return copy


def test_a_traversing_id_in_edition_json_is_refused_everywhere(
    workspace: Path, run: Runner
) -> None:
    _copied_with_id(workspace, "../../../../outside/x")
    expected = (
        "Error: drafts/copied/edition.json: id: '../../../../outside/x' is not an edition id\n"
        "Hint: use letters, digits, '.', '_' and '-' only, e.g. 2026-W48\n"
    )
    for args in (
        ("archive", "copied"),
        ("archive", "drafts/copied"),
        ("send", "copied", "--list", "weekly", "--yes"),
        ("test-send", "drafts/copied"),
        ("approve", "copied"),
        ("check", "copied"),
    ):
        result = run(*args)
        assert (result.exit_code, result.output) == (1, expected), args
    assert not (workspace.parent / "outside").exists()
    assert not (workspace / "archive").exists() or not any((workspace / "archive").iterdir())
    assert outbox_messages(workspace) == []


def test_ids_that_are_not_strings_or_are_empty_are_refused(workspace: Path, run: Runner) -> None:
    for ident, shown in ((["2026-W48"], "['2026-W48']"), ("", "''"), (".hidden", "'.hidden'")):
        shutil.rmtree(workspace / "drafts", ignore_errors=True)
        _copied_with_id(workspace, ident)  # type: ignore[arg-type]
        result = run("archive", "copied")
        assert (result.exit_code, result.output.splitlines()[0]) == (
            1,
            f"Error: drafts/copied/edition.json: id: {shown} is not an edition id",
        )


def test_an_archived_edition_with_a_traversing_id_is_refused(workspace: Path, run: Runner) -> None:
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    assert run("send", "2026-W48", "--list", "weekly", "--yes").exit_code == 0  # archives it
    meta_path = workspace / "archive/2026-W48/edition.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["id"] = "../../evil"
    meta_path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    result = run("archive", "2026-W48")
    assert (result.exit_code, result.output.splitlines()[0]) == (
        1,
        "Error: archive/2026-W48/edition.json: id: '../../evil' is not an edition id",
    )


def _failing_check(root: Path) -> None:
    """A draft that check fails (an http link, an image without alt), hashed consistently."""
    from delivery_draft import HTML, make_draft, write_draft_folder

    html = HTML.replace(
        "https://chrysanthemum-digest.example.jp/articles/trump-reelection",
        "http://chrysanthemum-digest.example.jp/articles/trump-reelection",
        1,
    ).replace("</body>", '<img src="https://chrysanthemum-digest.example.jp/a.png"></body>')
    write_draft_folder(root, make_draft(html=html))


def test_send_runs_the_checks_errors_first_and_force_overrides_loudly(
    workspace: Path, run: Runner
) -> None:
    _failing_check(workspace)
    checked = run("check", "2026-W48")
    assert checked.exit_code == 1
    errors = [line for line in checked.output.splitlines() if line.startswith("  error: ")]
    assert len(errors) == 2

    refused = run("send", "2026-W48", "--list", "weekly", "--yes")
    assert (refused.exit_code, refused.output) == (
        1,
        "Error: 2026-W48 fails check with 2 errors; nothing was sent:\n"
        + "\n".join(errors)
        + "\nHint: see 'digest-mail check 2026-W48', fix the articles or templates and compose it"
        " again, or add --force to send it anyway\n",
    )
    assert outbox_messages(workspace) == []
    assert run("status", "2026-W48").output.startswith("Error: no campaigns yet")

    forced = run("send", "2026-W48", "--list", "weekly", "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert forced.stderr.startswith(
        "WARNING: --force: sending 2026-W48 despite 2 check errors:\n" + "\n".join(errors) + "\n"
    )
    assert len(outbox_messages(workspace)) == 31


def test_a_dry_run_and_a_test_send_are_not_blocked_by_check(workspace: Path, run: Runner) -> None:
    _failing_check(workspace)
    assert run("send", "2026-W48", "--list", "weekly", "--dry-run").exit_code == 0
    assert run("test-send", "2026-W48").exit_code == 0


def test_a_scheduled_send_of_a_draft_check_fails_sends_nothing(
    workspace: Path, run: Runner
) -> None:
    set_schedules(workspace, weekly())
    _failing_check(workspace)
    assert run("approve", "2026-W48").exit_code == 0
    due = run("schedule", "run-due", "--now", SLOT)
    assert "failed: 2026-W48 fails check with 2 errors; nothing was sent:" in due.output
    assert "compose it again and approve it again)" in due.output
    assert outbox_messages(workspace) == []


def test_withdraw_holds_its_argument_to_the_id_grammar(workspace: Path, run: Runner) -> None:
    result = run("approve", "--withdraw", "2026 W48;x")
    assert (result.exit_code, result.output.splitlines()[0]) == (
        1,
        "Error: DRAFT: '2026 W48;x' is not an edition id",
    )
