"""The editor's first hour at the command line: typos and commands run in the wrong folder
end in one line that names the fix (issue 15, items 7 and 8)."""

from __future__ import annotations

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
