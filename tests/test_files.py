"""display_path: how every message names a file (one function for all stages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_mail.files import display_path


def test_a_file_inside_the_current_directory_is_shown_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "subscribers" / "weekly.csv") == "subscribers/weekly.csv"
    assert display_path(Path("subscribers/../articles/a.md")) == "articles/a.md"
    assert display_path(tmp_path) == "."


def test_a_file_elsewhere_is_shown_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert display_path(tmp_path / "other.csv") == str(tmp_path / "other.csv")
    assert display_path(Path("../other.csv")) == "../other.csv"
