"""subscribers add|remove|import|export: atomic rewrites of real list files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from digest_mail.audience.csvfiles import scan_list
from digest_mail.audience.editing import remove_subscriber
from digest_mail.audience.rows import Recipient
from digest_mail.errors import InputError
from digest_mail.ledger.db import Ledger, utcnow
from digest_mail.ledger.suppressions import is_suppressed, suppress

FIXTURES = Path(__file__).parents[1] / "fixtures" / "subscribers"


def rows(path: Path) -> list[tuple[str, str, str]]:
    return [(r.email, r.name, r.status) for r in scan_list(path) if isinstance(r, Recipient)]


def test_add_new_then_again_then_rename(workspace: Path, run) -> None:
    staff = workspace / "subscribers" / "staff.csv"
    result = run("subscribers", "add", "staff", "Kondo.Soma@Example.COM", "--name", "近藤 颯真")
    assert (result.exit_code, result.output) == (
        0,
        "added Kondo.Soma@example.com on subscribers/staff.csv\n",
    )
    again = run("subscribers", "add", "staff", "kondo.soma@example.com")
    assert again.output == "kondo.soma@example.com is already subscribed to subscribers/staff.csv\n"
    renamed = run("subscribers", "add", "staff", "kondo.soma@example.com", "--name", "近藤 そうま")
    assert renamed.output == "updated kondo.soma@example.com on subscribers/staff.csv\n"
    assert rows(staff)[-1] == ("Kondo.Soma@example.com", "近藤 そうま", "subscribed")
    assert len(rows(staff)) == 4
    assert staff.read_text(encoding="utf-8").splitlines()[0] == "email,name,status,subscribed_at"


def test_add_refuses_invalid_address_and_header_breaking_name(workspace: Path, run) -> None:
    bad = run("subscribers", "add", "staff", "taro@@example.jp")
    assert bad.exit_code == 1
    assert bad.output == (
        "Error: 'taro@@example.jp' is not a valid address (The part after the @-sign contains "
        "invalid characters: '@'.)\n"
    )
    evil = run(
        "subscribers", "add", "staff", "x@example.jp", "--name", "Name\r\nBcc: x@evil.example"
    )
    assert evil.exit_code == 1
    assert evil.output == (
        "Error: name: 'Name\\r\\nBcc: x@evil.example' contains a control character (U+000D) "
        "that could break a mail header\n"
    )
    assert len(rows(workspace / "subscribers" / "staff.csv")) == 3


def test_add_never_resubscribes_a_suppressed_address_without_the_flag(workspace: Path, run) -> None:
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        suppress(ledger, "ghost@example.jp", reason="bounced", source="bounces.mbox")
    refused = run("subscribers", "add", "weekly", "ghost@example.jp")
    assert refused.exit_code == 1
    assert refused.output == (
        "Error: ghost@example.jp is suppressed in the ledger (it unsubscribed or bounced)\n"
        "Hint: add --resubscribe only if the person asked to subscribe again\n"
    )
    unsubscribed = run("subscribers", "add", "weekly", "abe.miyu@example.jp")
    assert unsubscribed.exit_code == 1
    assert "abe.miyu@example.jp is on the list as unsubscribed (line 19)" in unsubscribed.output
    ok = run("subscribers", "add", "weekly", "ghost@example.jp", "--resubscribe")
    assert ok.output == "added ghost@example.jp on subscribers/weekly.csv\n"
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        assert not is_suppressed(ledger, "ghost@example.jp")


def test_add_creates_a_missing_list(workspace: Path, run) -> None:
    result = run("subscribers", "add", "press", "kisha@example.jp", "--name", "記者 クラブ")
    assert result.output == "added kisha@example.jp on subscribers/press.csv\n"
    assert rows(workspace / "subscribers" / "press.csv") == [
        ("kisha@example.jp", "記者 クラブ", "subscribed")
    ]


def test_remove(workspace: Path, run) -> None:
    result = run("subscribers", "remove", "staff", "SATO.MISAKI@example.jp")
    assert result.output == "removed sato.misaki@example.jp (line 3) from subscribers/staff.csv\n"
    missing = run("subscribers", "remove", "staff", "nobody@example.jp")
    assert (missing.exit_code, missing.output) == (
        1,
        "Error: subscribers/staff.csv: 'nobody@example.jp' is not on this list\n",
    )
    assert [r[0] for r in rows(workspace / "subscribers" / "staff.csv")] == [
        "editors@example.jp",
        "takahashi.ken@example.jp",
    ]


def test_a_failed_rewrite_leaves_the_list_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    shutil.copy(FIXTURES / "mixed.csv", path)
    before = path.read_bytes()
    with pytest.raises(InputError):
        remove_subscriber(path, "nobody@example.jp")
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["list.csv"]


def test_rewrite_keeps_problem_rows_columns_and_converts_cp932_to_utf8(tmp_path: Path, run) -> None:
    path = tmp_path / "excel.csv"
    shutil.copy(FIXTURES / "excel-cp932.csv", path)
    result = run("subscribers", "add", str(path), "ishii.shiori@example.jp", "--name", "石井 栞")
    assert result.exit_code == 0
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")  # a BOM so that Excel in Japan still reads it
    assert data.decode("utf-8-sig").splitlines() == [
        "email,name,status,subscribed_at,company",
        "takahashi.ichiro@example.jp,髙橋 一郎,subscribed,2026-01-05,㈱菊花商事",
        "watanabe.kana@example.com,渡邊 かな,subscribed,2026-02-10,①企画部",
        "saito.ryo@example.jp,齋藤 ｱｷﾗ,unsubscribed,2026-03-15,ソフトウェア開発～部",
        data.decode("utf-8-sig").splitlines()[4],
    ]
    last = data.decode("utf-8-sig").splitlines()[4].split(",")
    assert last[:3] == ["ishii.shiori@example.jp", "石井 栞", "subscribed"]
    mixed = tmp_path / "mixed.csv"
    shutil.copy(FIXTURES / "mixed.csv", mixed)
    run("subscribers", "remove", str(mixed), "suzuki.hanako@example.com")
    text = mixed.read_bytes().decode("utf-8-sig")
    assert "taro@@example.jp" in text and '"Name\r\nBcc: x@evil.example"' in text
    assert "suzuki" not in text
    assert text.splitlines()[0] == "Email ,Name, Status "


def test_import_merges_and_counts(workspace: Path, run, tmp_path: Path) -> None:
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        suppress(ledger, "ikeda.riku@example.com", reason="unsubscribed", source="weekly")
    signups = tmp_path / "signups.csv"
    signups.write_text(
        "email,name,region\n"
        "yamada.taro@example.jp,山田 太郎,東京都\n"  # unchanged
        "suzuki.hanako@example.com,鈴木 はなこ,\n"  # updated name
        "abe.miyu@example.jp,阿部 美優,\n"  # unsubscribed on the list: rejected
        "ikeda.riku@example.com,池田 陸,\n"  # suppressed: rejected
        "new.reader@example.jp,新しい 読者,沖縄県\n"  # new
        "bad@@example.jp,誰か,\n",  # invalid: rejected
        encoding="utf-8",
    )
    day_before = utcnow()[:10]
    result = run("subscribers", "import", str(signups), "--into", "weekly")
    days = {day_before, utcnow()[:10]}
    shown = str(signups)
    assert result.exit_code == 0
    assert result.output == (
        f"{shown}:7: 'bad@@example.jp' is not a valid address (The part after the @-sign "
        "contains invalid characters: '@'.)\n"
        f"{shown}:4: 'abe.miyu@example.jp' is unsubscribed on the list; not re-subscribed "
        "(use --resubscribe if the person asked to subscribe again)\n"
        f"{shown}:5: 'ikeda.riku@example.com' is suppressed in the ledger; not re-subscribed "
        "(use --resubscribe if the person asked to subscribe again)\n"
        f"imported {shown} into subscribers/weekly.csv: 1 new, 1 updated, 1 unchanged, 3 rejected\n"
    )
    weekly = workspace / "subscribers" / "weekly.csv"
    by_email = {r[0]: r for r in rows(weekly)}
    assert by_email["suzuki.hanako@example.com"][1] == "鈴木 はなこ"
    assert by_email["abe.miyu@example.jp"][2] == "unsubscribed"
    assert by_email["new.reader@example.jp"] == (
        "new.reader@example.jp",
        "新しい 読者",
        "subscribed",
    )
    # A new address gets the day it was imported, as 'add' gives it (issue 15, item 13).
    assert weekly.read_text(encoding="utf-8").splitlines()[-1] in {
        f"new.reader@example.jp,新しい 読者,subscribed,{day},沖縄県" for day in days
    }

    again = run(
        "subscribers", "import", str(signups), "--into", "weekly", "--resubscribe", "--json"
    )
    report = json.loads(again.output)
    assert {k: report[k] for k in ("new", "updated", "unchanged", "rejected")} == {
        "new": 0,
        "updated": 2,
        "unchanged": 3,
        "rejected": 1,
    }
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        assert not is_suppressed(ledger, "ikeda.riku@example.com")
    assert {r[0]: r[2] for r in rows(weekly)}["abe.miyu@example.jp"] == "subscribed"


def test_import_adds_new_columns_after_the_existing_ones(
    workspace: Path, run, tmp_path: Path
) -> None:
    extra = tmp_path / "extra.tsv"
    extra.write_text("email\tplan\nyamada.taro@example.jp\tpremium\n", encoding="utf-8")
    day_before = utcnow()[:10]
    result = run("subscribers", "import", str(extra), "--into", "staff")
    days = {day_before, utcnow()[:10]}
    assert result.output.endswith("staff.csv: 1 new, 0 updated, 0 unchanged, 0 rejected\n")
    lines = (workspace / "subscribers" / "staff.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "email,name,status,subscribed_at,plan"
    assert lines[-1] in {f"yamada.taro@example.jp,,subscribed,{day},premium" for day in days}


def test_export_writes_utf8_with_normalized_addresses(tmp_path: Path, run, workspace: Path) -> None:
    shutil.copy(FIXTURES / "mixed.csv", workspace / "subscribers" / "mixed.csv")
    result = run("subscribers", "export", "mixed")
    assert result.exit_code == 0
    assert result.stdout_bytes.decode("utf-8") == (
        "Email ,Name, Status \r\n"
        "yamada.taro@example.jp,山田 太郎,subscribed\r\n"
        "suzuki.hanako@example.com,鈴木 花子,unsubscribed\r\n"
        "hanako@例え.jp,佐藤 花子,subscribed\r\n"
    )
    assert result.stderr == "left out 8 problem rows (see 'digest-mail subscribers check mixed')\n"
    out = tmp_path / "out.csv"
    shutil.copy(FIXTURES / "excel-cp932.csv", workspace / "subscribers" / "excel.csv")
    written = run("subscribers", "export", "excel", "--output", str(out))
    assert written.exit_code == 0
    assert out.read_text(encoding="utf-8").splitlines()[1] == (
        "takahashi.ichiro@example.jp,髙橋 一郎,subscribed,2026-01-05,㈱菊花商事"
    )


def test_concurrent_adds_lose_nobody(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from digest_mail.audience.editing import add_subscriber

    path = tmp_path / "list.csv"
    addresses = [f"reader{n}@example.jp" for n in range(24)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda a: add_subscriber(path, a, name="読者"), addresses))
    assert sorted(r[0] for r in rows(path)) == sorted(addresses)
    assert sorted(os.listdir(tmp_path)) == ["list.csv"]
