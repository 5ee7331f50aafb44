"""Peak memory and rate of `digest-mail subscribers count` against list size.

Generates lists of 1,000 and 1,000,000 rows (Japanese names, a few extra columns, a
handful of duplicates and invalid rows) in a temporary workspace, runs the real CLI as
a child process on each and prints rows/s and the child's peak RSS (wait4 rusage).
Target: the million-row list under 100 MB, close to the thousand-row one.

    .venv/bin/python benchmarks/bench_subscribers.py [--rows 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAMILY = [
    "山田",
    "鈴木",
    "田中",
    "渡辺",
    "伊藤",
    "中村",
    "小林",
    "加藤",
    "吉田",
    "山口",
    "髙橋",
    "齋藤",
]
GIVEN = ["太郎", "花子", "一郎", "結衣", "健太", "さくら", "大輝", "芽衣", "翔", "葵", "蓮", "陽菜"]
REGIONS = ["東京都", "大阪府", "北海道", "福岡県", "愛知県", "京都府", "神奈川県", "宮城県"]


def write_list(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name", "status", "subscribed_at", "region"])
        for n in range(rows):
            if n % 100_000 == 99_999:
                email = f"broken{n}@@example.jp"  # an invalid row now and then
            elif n % 250_000 == 12_345:
                email = "Reader0@Example.JP"  # a duplicate of row 0 (case-insensitive)
            else:
                email = f"reader{n}@{'example.jp' if n % 3 else 'example.com'}"
            name = f"{FAMILY[n % 12]} {GIVEN[(n // 12) % 12]}"
            status = "unsubscribed" if n % 50 == 0 and n else "subscribed"
            writer.writerow([email, name, status, "2026-04-01", REGIONS[n % 8]])


def suppress_some(root: Path) -> None:
    """A ledger with 1,000 suppressions, so that count consults it for every row."""
    from digest_mail.ledger.db import Ledger
    from digest_mail.ledger.suppressions import suppress

    with Ledger(root / "var" / "ledger.sqlite3") as ledger, ledger.transaction():
        for n in range(0, 1_000_000, 1_000):
            suppress(ledger, f"reader{n + 7}@example.jp", reason="bounced", source="bench")


def run_count(workspace: Path, list_path: Path) -> tuple[float, int, dict[str, object]]:
    """(seconds, peak RSS in bytes, the --json result) of one CLI process."""
    command = [
        sys.executable, "-m", "digest_mail", "-w", str(workspace),
        "subscribers", "count", str(list_path), "--json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAIL_")}
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(command, stdout=out, env=env)
        _pid, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8")
    if process.returncode != 0:
        raise SystemExit(f"digest-mail exited with {process.returncode}: {text}")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return elapsed, usage.ru_maxrss * scale, json.loads(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Generate into this folder and keep it.")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-subscribers-"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "digest-mail.toml").touch()  # a workspace: the defaults will do
    suppress_some(root)
    try:
        print(f"{'rows':>10}  {'file MB':>8}  {'seconds':>8}  {'rows/s':>9}  {'peak RSS MB':>11}")
        for rows in (1_000, args.rows):
            path = root / f"list-{rows}.csv"
            if not path.exists():
                write_list(path, rows)
            seconds, peak, result = run_count(root, path)
            assert result["rows"] == rows, result
            size = path.stat().st_size / 1e6
            print(
                f"{rows:>10,}  {size:>8.1f}  {seconds:>8.2f}  {rows / seconds:>9,.0f}  "
                f"{peak / 1e6:>11.1f}   problems={result['problems']} "
                f"unsubscribed={result['unsubscribed']} suppressed={result['suppressed']}"
            )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
