"""Subscriber lists: reading real CSV files, reporting problems, the list commands."""

from __future__ import annotations

import codecs
import csv
import json
import shutil
import unicodedata
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP
from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st

from digest_mail.audience.addresses import AddressError, normalize_address
from digest_mail.audience.csvfiles import scan_list
from digest_mail.audience.keyset import SeenKeys
from digest_mail.audience.lists import iter_recipients
from digest_mail.audience.rows import ListCounts, Recipient, RowProblem
from digest_mail.config import find_workspace
from digest_mail.errors import InputError
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.suppressions import suppress

FIXTURES = Path(__file__).parents[1] / "fixtures" / "subscribers"


def recipients(path: Path) -> list[Recipient]:
    return [item for item in scan_list(path) if isinstance(item, Recipient)]


def problems(path: Path) -> list[RowProblem]:
    return [item for item in scan_list(path) if isinstance(item, RowProblem)]


def test_cp932_file_saved_by_excel_reads_japanese_names_correctly() -> None:
    rows = recipients(FIXTURES / "excel-cp932.csv")
    assert [(r.email, r.name, r.status, dict(r.attrs)) for r in rows] == [
        ("takahashi.ichiro@example.jp", "髙橋 一郎", "subscribed", {"company": "㈱菊花商事"}),
        ("watanabe.kana@example.com", "渡邊 かな", "subscribed", {"company": "①企画部"}),
        ("saito.ryo@example.jp", "齋藤 ｱｷﾗ", "unsubscribed", {"company": "ソフトウェア開発～部"}),
    ]
    assert rows[0].subscribed_at == "2026-01-05"
    assert [r.line for r in rows] == [2, 3, 4]


def test_mixed_file_reports_each_problem_with_its_line(workspace: Path, run) -> None:
    shutil.copy(FIXTURES / "mixed.csv", workspace / "subscribers" / "mixed.csv")
    result = run("subscribers", "check", "mixed")
    assert result.exit_code == 1
    assert result.output == (
        "subscribers/mixed.csv:3: 'taro@@example.jp' is not a valid address (The part after "
        "the @-sign contains invalid characters: '@'.)\n"
        "subscribers/mixed.csv:4: 'Yamada.Taro@example.jp' is a duplicate of line 2\n"
        "subscribers/mixed.csv:5: name: 'Name\\r\\nBcc: x@evil.example' contains a control "
        "character (U+000D) that could break a mail header\n"
        "subscribers/mixed.csv:9: 'nakamura@example' is not a valid address (The part after "
        "the @-sign is not valid. It should have a period.)\n"
        "subscribers/mixed.csv:10: name: '伊藤\\u2028健太' contains a control character "
        "(U+2028) that could break a mail header\n"
        "subscribers/mixed.csv:11: status: 'paused' is neither 'subscribed' nor 'unsubscribed'\n"
        "subscribers/mixed.csv:12: no address in the 'email' column\n"
        "subscribers/mixed.csv:14: has 4 fields but the header has 3\n"
        "subscribers/mixed.csv: 11 rows: 2 subscribed, 1 unsubscribed, 0 suppressed, "
        "8 problems (1 columns, 2 control-chars, 1 duplicate, 3 invalid, 1 status)\n"
    )


def test_header_names_are_trimmed_and_bom_removed() -> None:
    rows = recipients(FIXTURES / "mixed.csv")
    assert [(r.line, r.email, r.name, r.status) for r in rows] == [
        (2, "yamada.taro@example.jp", "山田 太郎", "subscribed"),
        (7, "suzuki.hanako@example.com", "鈴木 花子", "unsubscribed"),
        (13, "hanako@例え.jp", "佐藤 花子", "subscribed"),
    ]


def test_idn_domain_is_normalized_and_keyed_casefolded() -> None:
    email, key = normalize_address("Hanako@例え.JP")
    assert (email, key) == ("Hanako@例え.jp", "hanako@例え.jp")
    assert normalize_address("hanako@xn--r8jz45g.jp")[1] == key


def test_name_with_crlf_never_becomes_a_header() -> None:
    """The injected Bcc row is a problem; no Recipient carries a line break anywhere."""
    items = list(scan_list(FIXTURES / "mixed.csv"))
    evil = [p for p in items if isinstance(p, RowProblem) and "evil" in p.value]
    assert [(p.line, p.kind, p.field) for p in evil] == [(5, "control-chars", "name")]
    for item in items:
        if not isinstance(item, Recipient):
            continue
        assert "evil" not in item.email
        for value in (item.email, item.name, *item.attrs.values()):
            assert not any(c in value for c in "\r\n\x00\u2028\u2029")
        # What a header builder does with it: one To header, nothing else.
        message = EmailMessage(policy=SMTP)
        message["To"] = Address(display_name=item.name, addr_spec=item.email)
        message["Subject"] = "Chrysanthemum Digest"
        parsed = BytesParser(policy=SMTP).parsebytes(message.as_bytes())
        assert parsed.get_all("Bcc") is None
        assert list(parsed.keys()) == ["To", "Subject"]


def test_encoded_word_names_are_reported_by_check_not_left_to_the_send(
    workspace: Path, run
) -> None:
    (workspace / "subscribers" / "odd.csv").write_text(
        "email,name\n"
        "sato@example.jp,=?utf-8?q?a=0D=0ABcc:_x@evil.example?=\n"
        "suzuki@example.jp,鈴木 一郎\n",
        encoding="utf-8",
    )
    result = run("subscribers", "check", "odd")
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        "subscribers/odd.csv:2: name: '=?utf-8?q?a=0D=0ABcc:_x@evil.example?=' is an RFC 2047 "
        "encoded word, which a mail header would decode; write the name as plain text"
    )


def test_tab_and_semicolon_delimiters_are_detected() -> None:
    tab = recipients(FIXTURES / "tab.tsv")
    assert [(r.email, r.name, dict(r.attrs)) for r in tab] == [
        ("mori.takumi@example.jp", "森 拓海", {"region": "東京都"}),
        ("abe.miyu@example.jp", "阿部, 美優", {"region": "大阪府"}),
    ]
    semicolon = recipients(FIXTURES / "semicolon.csv")
    assert [(r.email, r.name) for r in semicolon] == [("ikeda.riku@example.com", "池田 陸")]


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "utf16.csv"
    path.write_bytes(
        codecs.BOM_UTF16_LE + "email\tname\r\nmio@example.jp\t石川 澪\r\n".encode("utf-16-le")
    )
    assert [(r.email, r.name) for r in recipients(path)] == [("mio@example.jp", "石川 澪")]


def test_missing_email_column_is_one_error_naming_the_file(workspace: Path, run) -> None:
    shutil.copy(FIXTURES / "no-email-column.csv", workspace / "subscribers" / "bad.csv")
    result = run("subscribers", "check", "bad")
    assert result.exit_code == 1
    assert result.output == (
        "Error: subscribers/bad.csv:1: no 'email' column (found: 'mail', 'name')\n"
        "Hint: name the address column 'email' in the header row\n"
    )


def test_broken_utf8_stops_with_the_line_instead_of_mojibake(workspace: Path, run) -> None:
    shutil.copy(FIXTURES / "undecodable.csv", workspace / "subscribers" / "bad.csv")
    result = run("subscribers", "count", "bad")
    assert result.exit_code == 1
    assert result.output == (
        "Error: subscribers/bad.csv:3: neither UTF-8 nor cp932 (Shift_JIS) text: cannot "
        "decode byte(s) ff\n"
        "Hint: save the file as 'CSV UTF-8' and check that line\n"
    )


def test_undecodable_cp932_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken-sjis.csv"
    path.write_bytes(
        "email,name\r\na@example.jp,山田\r\n".encode("cp932") + b"b@example.jp,\x82\r\n"
    )
    with pytest.raises(InputError, match=r"broken-sjis.csv:3: neither UTF-8 nor cp932"):
        list(scan_list(path))


def test_empty_file_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match=r"empty.csv:1: empty file"):
        list(scan_list(tmp_path / "empty.csv"))
    with pytest.raises(InputError, match=r"nope.csv: no such file"):
        list(scan_list(tmp_path / "nope.csv"))


def test_duplicate_detector_keeps_first_lines_across_growth() -> None:
    seen = SeenKeys()
    for n in range(5000):
        assert seen.add(f"user{n}@example.jp", n + 2) is None
    assert seen.add("user0@example.jp", 9999) == 2
    assert seen.add("user4999@example.jp", 9999) == 5001
    assert seen.add("someone.new@example.jp", 9999) is None


_ATOM = st.text(alphabet="abcXYZ019.-_+!#&'*@ \"", min_size=0, max_size=12)
_DOMAIN = st.sampled_from(
    [
        "example.jp",
        "EXAMPLE.com",
        "例え.jp",
        "example",
        "ex..ample.jp",
        "-x.example.jp",
        "localhost",
        "xn--r8jz45g.jp",
        "example.123",
        "a" * 64 + ".jp",
        "",
    ]
)


@settings(max_examples=300, deadline=None)
@given(local=_ATOM, domain=_DOMAIN)
def test_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    value = f"{local}@{domain}"
    try:
        full = validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        with pytest.raises(AddressError):
            normalize_address(value)
        return
    assert normalize_address(value) == (
        f"{full.local_part}@{full.domain}",
        f"{full.local_part}@{full.domain}".casefold(),
    )


def test_suppressed_address_is_excluded_from_the_recipients(workspace: Path) -> None:
    ws = find_workspace(workspace)
    with Ledger(ws.ledger_path) as ledger:
        assert suppress(ledger, "Suzuki.Hanako@example.com", reason="unsubscribed", source="weekly")
        counts = ListCounts()
        excluded: list[tuple[str, str]] = []
        items = list(
            iter_recipients(
                ws,
                "weekly",
                ledger,
                counts=counts,
                on_excluded=lambda r, why: excluded.append((r.email, why)),
            )
        )
    emails = [i.email for i in items if isinstance(i, Recipient)]
    assert "suzuki.hanako@example.com" not in emails
    assert "abe.miyu@example.jp" not in emails  # status unsubscribed in the sample list
    assert excluded == [
        ("suzuki.hanako@example.com", "suppressed"),
        ("abe.miyu@example.jp", "unsubscribed"),
    ]
    assert (counts.rows, counts.subscribed, counts.suppressed, counts.unsubscribed) == (
        32,
        30,
        1,
        1,
    )
    assert len(emails) == 30


def test_count_json_and_text(workspace: Path, run) -> None:
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        suppress(ledger, "yamada.taro@example.jp", reason="bounced", source="test")
    result = run("subscribers", "count", "weekly", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {
        "list": "weekly",
        "path": "subscribers/weekly.csv",
        "rows": 32,
        "subscribed": 30,
        "unsubscribed": 1,
        "suppressed": 1,
        "problems": 0,
        "problem_kinds": {},
    }
    text = run("subscribers", "count", "weekly")
    assert text.output == (
        "subscribers/weekly.csv: 32 rows: 30 subscribed, 1 unsubscribed, 1 suppressed, 0 problems\n"
    )


def test_check_does_not_create_a_ledger(workspace: Path, run) -> None:
    result = run("subscribers", "check", "staff")
    assert result.exit_code == 0
    assert result.output == (
        "subscribers/staff.csv: 3 rows: 3 subscribed, 0 unsubscribed, 0 suppressed, 0 problems\n"
    )
    assert not (workspace / "var").exists()


def test_cp932_half_width_kana_that_is_also_valid_utf8_is_still_cp932(tmp_path: Path) -> None:
    """ﾅｶ in cp932 (c5 b6) is a valid two-byte UTF-8 sequence: the guess must not stop there."""
    path = tmp_path / "kana.csv"
    path.write_bytes("email,name\r\nnaka@example.jp,ﾅｶ あきら\r\n".encode("cp932"))
    assert [(r.email, r.name) for r in recipients(path)] == [("naka@example.jp", "ﾅｶ あきら")]


def test_private_use_characters_in_utf8_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "pua.csv"
    path.write_text("email,name\nsato@example.jp,佐藤 \ue000\n", encoding="utf-8")
    assert [r.name for r in recipients(path)] == ["佐藤 \ue000"]


_FIELD = st.text(
    alphabet=st.sampled_from(list('山田 太郎ｶﾅ,;\t"\r\n\x00\x0b\x1b\x7f\x85\u2028\u2029aZ@.')),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(names=st.lists(_FIELD, min_size=1, max_size=6), region=_FIELD)
def test_no_control_character_ever_reaches_a_recipient(
    tmp_path_factory: pytest.TempPathFactory, names: list[str], region: str
) -> None:
    """Whatever a name or attribute holds, a Recipient never carries a line break or
    control character, and every row comes out as exactly one Recipient or RowProblem."""
    path = tmp_path_factory.mktemp("lists") / "list.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name", "region"])
        for n, name in enumerate(names):
            writer.writerow([f"reader{n}@example.jp", name, region])
    items = list(scan_list(path))
    assert len(items) == len(names)
    for item in items:
        if isinstance(item, Recipient):
            for value in (item.email, item.name, *item.attrs.values()):
                assert not any(
                    unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in value
                )
        else:
            assert item.kind == "control-chars"


def test_check_json_lists_each_problem(workspace: Path, run) -> None:
    shutil.copy(FIXTURES / "mixed.csv", workspace / "subscribers" / "mixed.csv")
    result = run("subscribers", "check", "mixed", "--json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert (data["rows"], data["subscribed"], data["problems"]) == (11, 2, 8)
    assert data["rows_with_problems"][2] == {
        "path": "subscribers/mixed.csv",
        "line": 5,
        "kind": "control-chars",
        "field": "name",
        "value": "Name\r\nBcc: x@evil.example",
        "message": "name: 'Name\\r\\nBcc: x@evil.example' contains a control character "
        "(U+000D) that could break a mail header",
    }
    assert [p["line"] for p in data["rows_with_problems"]] == [3, 4, 5, 9, 10, 11, 12, 14]


def test_missing_list_names_the_file_and_how_lists_are_named(workspace: Path, run) -> None:
    result = run("subscribers", "count", "nope")
    assert (result.exit_code, result.output) == (
        1,
        "Error: no list 'nope': subscribers/nope.csv does not exist (lists: staff, weekly)\n"
        "Hint: start the list with 'digest-mail subscribers add nope ADDRESS'\n",
    )
