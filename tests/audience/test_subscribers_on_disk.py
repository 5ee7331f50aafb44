"""Duplicate detection for big lists runs in a temporary file (flat memory, issue #6):
it must give exactly the answers of the in-memory table."""

from __future__ import annotations

from pathlib import Path

import pytest

from digest_mail.audience import keyset
from digest_mail.audience.csvfiles import scan_list
from digest_mail.audience.rows import Recipient, RowProblem


def scan(path: Path) -> list[tuple[str, int, str]]:
    out = []
    for item in scan_list(path):
        if isinstance(item, RowProblem):
            out.append(("problem", item.line, item.message))
        else:
            assert isinstance(item, Recipient)
            out.append(("recipient", item.line, item.email))
    return out


def test_on_disk_duplicates_match_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "weekly.csv"
    rows = ["email,name,status"]
    for i in range(3000):
        rows.append(f"reader{i % 2500:05d}@example.jp,山田 {i},subscribed")
    rows.append("READER00007@Example.JP,鈴木 花子,subscribed")  # a case-insensitive duplicate
    rows.append("taro@@example.jp,壊れた行,subscribed")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    monkeypatch.setattr(keyset, "SEEN_IN_MEMORY_ROWS", 10**9)
    in_memory = scan(path)
    monkeypatch.setattr(keyset, "SEEN_IN_MEMORY_ROWS", 0)
    on_disk = scan(path)

    assert on_disk == in_memory
    duplicates = [entry for entry in on_disk if "duplicate" in entry[2]]
    assert len(duplicates) == 501
    assert ("problem", 3002, "'READER00007@example.jp' is a duplicate of line 9") in on_disk
