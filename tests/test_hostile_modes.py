"""Files digest-mail writes honour the umask when new and keep their mode when replaced
(issue 14 item 8): ``umask 077`` on a shared machine must not end in 0644 lists."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Runner
from schedule_helpers import compose_draft

FEED = Path(__file__).parent / "fixtures" / "feeds" / "site-atom.xml"


@pytest.fixture
def umask() -> Iterator[None]:
    """umask 077 for the test (the process's own, restored afterwards)."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_follow_umask_077(workspace: Path, run: Runner, umask: None) -> None:
    assert run("subscribers", "add", "fresh", "hanako@example.jp", "--new-list").exit_code == 0
    assert mode(workspace / "subscribers" / "fresh.csv") == 0o600
    assert run("subscribers", "export", "weekly", "-o", "weekly-export.csv").exit_code == 0
    assert mode(workspace / "weekly-export.csv") == 0o600
    assert run("articles", "import", str(FEED)).exit_code == 0
    imported = sorted((workspace / "articles").glob("2026-*.md"))
    assert imported and {mode(p) for p in imported} == {0o600}
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界")
    draft = workspace / "drafts" / "2026-W48"
    assert mode(draft) == 0o700
    assert {mode(p) for p in draft.iterdir()} == {0o600}
    # send publishes the archive once the campaign is complete (archive takes only that).
    assert run("send", "2026-W48", "--list", "weekly", "--yes").exit_code == 0
    assert {mode(p) for p in (workspace / "archive").rglob("*") if p.is_file()} == {0o600}


def test_replaced_files_keep_their_mode(workspace: Path, run: Runner) -> None:
    weekly = workspace / "subscribers" / "weekly.csv"
    weekly.chmod(0o640)
    assert run("subscribers", "add", "weekly", "new.reader@example.jp").exit_code == 0
    assert mode(weekly) == 0o640
    assert run("subscribers", "remove", "weekly", "new.reader@example.jp").exit_code == 0
    assert mode(weekly) == 0o640
    out = workspace / "out.csv"
    out.write_text("", encoding="utf-8")
    out.chmod(0o600)
    assert run("subscribers", "export", "weekly", "-o", "out.csv").exit_code == 0
    assert mode(out) == 0o600


def test_new_files_follow_the_usual_umask_too(workspace: Path, run: Runner) -> None:
    previous = os.umask(0o022)
    try:
        assert run("subscribers", "add", "fresh", "a@example.jp", "--new-list").exit_code == 0
        assert run("articles", "import", str(FEED)).exit_code == 0
    finally:
        os.umask(previous)
    assert mode(workspace / "subscribers" / "fresh.csv") == 0o644
    assert {mode(p) for p in (workspace / "articles").glob("2026-*.md")} == {0o644}
