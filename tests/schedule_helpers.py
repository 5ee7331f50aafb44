"""Helpers for the schedule and approval tests: schedules in the workspace, drafts, outbox."""

from __future__ import annotations

import datetime as dt
import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

from digest_mail.config import Workspace, find_workspace

ARTICLE = """---
title: "{title}"
url: https://chrysanthemum-digest.example.jp/articles/{slug}
published: 2026-11-20
lead: "{title}を要点とともに解説します。"
category: 国際
points:
  - 同盟の負担をめぐる議論が再燃する
  - 核軍縮の交渉は先行きが見えない
sources:
  - title: "各国の反応"
    url: https://news.example.net/{slug}
    published: 2026-11-19
---

## 何が起きたのか

{title}。各国は対応を急いでいます。
"""


def set_schedules(root: Path, block: str) -> None:
    """Replace the [[schedule]] tables of the workspace's digest-mail.toml with ``block``."""
    path = root / "digest-mail.toml"
    text = path.read_text(encoding="utf-8")
    head = text.split("[[schedule]]", 1)[0]
    path.write_text(head.rstrip() + "\n\n" + block.strip() + "\n", encoding="utf-8")


def weekly(
    *,
    name: str = "weekly",
    list_name: str = "weekly",
    cron: str = "0 8 * * MON",
    timezone: str = "Asia/Tokyo",
    late_after: str = "6h",
    edition: str = "approved",
) -> str:
    return (
        f'[[schedule]]\nname = "{name}"\nlist = "{list_name}"\ncron = "{cron}"\n'
        f'timezone = "{timezone}"\nedition = "{edition}"\nlate_after = "{late_after}"\n'
    )


def write_list(root: Path, name: str, rows: list[tuple[str, str]]) -> None:
    lines = ["email,name,status"] + [f"{address},{person},subscribed" for address, person in rows]
    folder = root / "subscribers"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def compose_draft(
    root: Path, edition: str, *, title: str, now: dt.datetime | None = None, force: bool = False
) -> str:
    """Compose ``drafts/<edition>/`` from one article through the real pipeline."""
    from digest_mail.render.compose import compose

    article = root / "scratch" / f"{edition}.md"
    article.parent.mkdir(exist_ok=True)
    article.write_text(ARTICLE.format(title=title, slug=edition.lower()), encoding="utf-8")
    draft = compose(
        find_workspace(root),
        [article],
        edition_id=edition,
        today=dt.date(2026, 11, 23),
        now=now,
        force=force,
    )
    return draft.id


def workspace_of(root: Path) -> Workspace:
    return find_workspace(root)


def outbox_messages(root: Path) -> list[EmailMessage]:
    """Every message captured in outbox/ (Maildir new/ and cur/), parsed."""
    found: list[EmailMessage] = []
    for sub in ("new", "cur"):
        folder = root / "outbox" / sub
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
                assert isinstance(message, EmailMessage)
                found.append(message)
    return found


def ran_before(
    root: Path, schedule: str = "weekly", slot: str = "2026-11-23T08:00:00+09:00"
) -> None:
    """Record an earlier slot of ``schedule`` as run: the schedule has been running since."""
    from digest_mail.ledger.schedule_runs import claim_slot
    from ledger_rows import workspace_ledger

    moment = dt.datetime.fromisoformat(slot)
    with workspace_ledger(root) as ledger:
        claim_slot(ledger, schedule, moment, state="skipped", edition=None, note="", now=moment)
