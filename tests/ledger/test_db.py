"""The ledger file: migrated once, to the newest schema, in WAL mode."""

from __future__ import annotations

from pathlib import Path

from digest_mail.ledger.db import Ledger
from digest_mail.ledger.migrations import MIGRATIONS


def test_ledger_migrates_once(tmp_path: Path) -> None:
    path = tmp_path / "var" / "ledger.sqlite3"
    with Ledger(path) as ledger:
        assert ledger.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert ledger.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Ledger(path) as ledger:
        tables = {r[0] for r in ledger.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "suppressions" in tables
