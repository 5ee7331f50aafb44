"""The README's command reference is generated from --help and kept current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from conftest import REPO

spec = importlib.util.spec_from_file_location(
    "cli_reference", REPO / "scripts" / "cli_reference.py"
)
assert spec and spec.loader
cli_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli_reference)


def test_readme_starts_with_the_two_setup_commands() -> None:
    head = (REPO / "README.md").read_text(encoding="utf-8").splitlines()[:20]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_every_command_has_help_with_an_example() -> None:
    missing = [
        " ".join(path) or "digest-mail"
        for path, command in cli_reference.iter_commands(cli_reference.cli)
        if "Example" not in (command.help or "")
    ]
    assert missing == []


def test_readme_command_reference_is_current() -> None:
    text = Path(REPO / "README.md").read_text(encoding="utf-8")
    assert cli_reference.updated(text) == text, "run: .venv/bin/python scripts/cli_reference.py"
