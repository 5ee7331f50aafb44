"""The editor's first hour at the command line: typos and commands run in the wrong folder
end in one line that names the fix (issue 15, items 7 and 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

USAGE = "Usage: cli [OPTIONS] COMMAND [ARGS]...\nTry 'cli --help' for help.\n\n"
NO_WORKSPACE_HINT = (
    "Hint: cd into the workspace or use --workspace DIR ('digest-mail init DIR' creates one)\n"
)


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [
        ("comppose", "Did you mean 'compose'?"),
        ("sned", "Did you mean 'send'?"),
        ("tset-send", "(Did you mean one of: 'send', 'test-send'?)"),
        ("subscriber", "(Did you mean one of: 'subscribers', 'unsubscribe'?)"),
    ],
)
def test_a_top_level_typo_names_the_command(run, typed: str, suggestion: str) -> None:
    # Most commands are loaded lazily: the suggestion must look at all of them anyway.
    result = run(typed)
    assert result.exit_code == 2
    assert result.output == f"{USAGE}Error: No such command '{typed}'. {suggestion}\n"


def test_a_word_like_no_command_gets_no_suggestion(run) -> None:
    result = run("xyzzy")
    assert result.exit_code == 2
    assert result.output == f"{USAGE}Error: No such command 'xyzzy'.\n"


def test_compose_outside_a_workspace_says_where_it_looked(
    tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)
    for command in (["compose"], ["send", "--list", "weekly"], ["schedule", "list"], ["status"]):
        result = run(*command)
        assert result.exit_code == 1, command
        assert result.output == (
            f"Error: no digest-mail.toml in {home} or its parents\n{NO_WORKSPACE_HINT}"
        ), command
    assert list(home.iterdir()) == []  # nothing was created there (no var/, no drafts/)


def test_a_workspace_option_naming_a_folder_without_settings(
    tmp_path: Path, run, workspace: Path
) -> None:
    elsewhere = tmp_path / "not-a-workspace"
    elsewhere.mkdir()
    for args, env in (
        (["--workspace", str(elsewhere), "compose"], None),
        (["compose"], {"DIGEST_MAIL_WORKSPACE": str(elsewhere)}),
    ):
        result = run(*args, env=env)
        assert result.exit_code == 1
        assert result.output == f"Error: no digest-mail.toml in {elsewhere}\n{NO_WORKSPACE_HINT}"
    missing = tmp_path / "gone"
    result = run("--workspace", str(missing), "compose")
    assert result.exit_code == 1
    assert result.output == f"Error: workspace {missing} is not a folder\n{NO_WORKSPACE_HINT}"


def test_the_workspace_is_found_from_a_subfolder_and_through_the_variable(
    tmp_path: Path, run, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace / "articles")
    result = run("articles", "list", "--all")
    assert result.exit_code == 0, result.output
    assert result.output.endswith(" articles\n")

    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)
    via_env = run("articles", "list", "--all", env={"DIGEST_MAIL_WORKSPACE": str(workspace)})
    assert via_env.exit_code == 0, via_env.output
    # Paths are shown relative to the current directory; the articles are the same.
    assert via_env.output.splitlines()[::2] == result.output.splitlines()[::2]
    assert str(workspace / "articles") in via_env.output


def test_plain_status_leaves_test_sends_out(workspace: Path, run) -> None:
    assert run("compose", "--edition", "2026-W49", "--since", "3650d").exit_code == 0
    assert run("test-send", "2026-W49").exit_code == 0
    only_tests = run("status")
    assert (only_tests.exit_code, only_tests.output) == (
        1,
        "Error: no campaigns yet, only 1 test send\n"
        "Hint: see them with 'digest-mail status --all'\n",
    )
    assert run("send", "2026-W49", "--list", "weekly", "--yes").exit_code == 0
    plain = run("status")
    assert plain.exit_code == 0
    assert plain.output.splitlines()[0] == "2026-W49/weekly (campaign, finished): 31 recipients"
    assert "test" not in plain.output
    every = run("status", "--all")
    assert every.exit_code == 0
    firsts = [line for line in every.output.splitlines() if not line.startswith(" ")]
    assert len(firsts) == 2
    assert firsts[0].startswith("2026-W49/test/") and firsts[0].endswith(
        " (test, finished): 3 recipients"
    )
    assert firsts[1] == "2026-W49/weekly (campaign, finished): 31 recipients"
    by_edition = run("status", "2026-W49", "--all", "--json")
    assert [c["kind"] for c in json.loads(by_edition.output)] == ["test", "campaign"]


def test_edition_json_keeps_japanese_readable(workspace: Path, run) -> None:
    assert run("compose", "--edition", "2026-W49", "--since", "3650d").exit_code == 0
    raw = (workspace / "drafts" / "2026-W49" / "edition.json").read_bytes()
    text = raw.decode("utf-8")
    assert "今週の注目記事" in text
    assert "\\u" not in text


def test_a_nameless_reader_is_greeted_as_all_readers_in_both_parts(workspace: Path, run) -> None:
    from schedule_helpers import outbox_messages

    assert run("compose", "--edition", "2026-W49", "--since", "3650d").exit_code == 0
    assert run("test-send", "2026-W49", "--to", "nameless@example.jp").exit_code == 0
    (message,) = outbox_messages(workspace)
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "\r\n読者の皆さま、こんにちは。\r\n" in text.get_content()
    assert ">読者の皆さま、こんにちは。</p>" in html.get_content()
    assert "読者 さん" not in text.get_content() + html.get_content()
