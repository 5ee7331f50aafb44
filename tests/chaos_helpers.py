"""Helpers shared by the chaos tests: lists, a fast clock, reading the ledger's verdict."""

from __future__ import annotations

import asyncio
import csv
import time
from dataclasses import dataclass
from pathlib import Path

from digest_mail.config import Workspace
from ledger_rows import workspace_ledger

SURNAMES = ["山田", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "中村", "小林", "加藤"]
GIVEN = ["太郎", "花子", "一郎", "美咲", "翔太", "陽菜", "蓮", "結衣", "大輔", "さくら"]
DOMAINS = ["example.jp", "example.com", "example.net"]


def write_list(path: Path, count: int) -> list[str]:
    """A subscriber CSV of ``count`` Japanese-named recipients; returns their addresses."""
    addresses = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(["email", "name", "status"])
        for i in range(count):
            address = f"reader{i:05d}@{DOMAINS[i % len(DOMAINS)]}"
            name = f"{SURNAMES[i % 10]} {GIVEN[(i // 10) % 10]}"
            writer.writerow([address, name, "subscribed"])
            addresses.append(address)
    return addresses


class FastClock:
    """Real monotonic time plus whatever the campaign chose to sleep: backoff costs nothing."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    async def sleep(self, seconds: float) -> None:
        self.offset += seconds
        self.slept += seconds
        await asyncio.sleep(0)


@dataclass(frozen=True)
class Delivery:
    email: str
    state: str
    uncertain: bool
    attempts: int
    code: int | None
    reply: str
    message_id: str


def deliveries(where: Workspace | Path, campaign_id: str) -> dict[str, Delivery]:
    """Every delivery row of the campaign, keyed by the casefolded address, from the
    ledger of the workspace (or workspace folder) ``where``, SQLite or PostgreSQL."""
    with workspace_ledger(where) as ledger:
        rows = ledger.execute(
            "SELECT address, email, state, uncertain, attempts, last_code, last_reply, message_id "
            "FROM deliveries WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchall()
    return {r[0]: Delivery(r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7]) for r in rows}


def env_for(url: str, *, timeout: float = 2.0, concurrency: int = 8) -> dict[str, str]:
    """Settings that make a chaos send fast: short timeout, retries for an hour.

    The timeout must stay well above a loaded machine's scheduling delays (the first
    connection's greeting counts: a relay that never answers it stops the campaign) and
    below the fault server's stall.
    """
    return {
        "DIGEST_MAIL_SMTP_URL": url,
        "DIGEST_MAIL_SMTP_TIMEOUT": str(timeout),
        "DIGEST_MAIL_SMTP_RETRY_FOR": "1h",
        "DIGEST_MAIL_SMTP_CONCURRENCY": str(concurrency),
        "DIGEST_MAIL_SECRET": "chaos-test-secret-0123456789abcdef",
    }
