"""``digest-mail init``: a new workspace that composes and test-sends out of the box."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

from digest_mail.audience.addresses import normalize_address
from digest_mail.config import CONFIG_NAME, load_settings
from digest_mail.delivery.identity import sample_identity
from digest_mail.errors import DigestMailError

__all__ = ["InitReport", "init_workspace", "packaged_templates"]

GITIGNORE = """\
# Made by digest-mail on every run; never commit them.
drafts/
outbox/
var/
archive/
"""

CONFIG_TEMPLATE = """\
# digest-mail workspace settings. Every key can be overridden by an environment
# variable DIGEST_MAIL_<SECTION>_<KEY>, e.g. DIGEST_MAIL_SMTP_URL=smtps://relay.example.jp:465.
#
# Secrets never go in this file or on the command line:
#   DIGEST_MAIL_SMTP_PASSWORD  the SMTP password (or [smtp] password_file)
#   DIGEST_MAIL_SECRET         the unsubscribe signing key (or [unsubscribe] key_file;
#                              without either, var/unsubscribe.key is made on first use)
#   DIGEST_MAIL_DKIM_KEY       the DKIM private key, PEM (or [dkim] key_file)
# A secret file must be readable by its owner only (chmod 600).

[newsletter]
name = "Chrysanthemum Digest"
from = "Chrysanthemum Digest <digest@example.jp>"
# reply_to = "editors@example.jp"
contact = "editors@example.jp"
site_url = "https://chrysanthemum-digest.example.jp"
# List-Id header: a name under a domain you control.
list_id = "weekly.chrysanthemum-digest.example.jp"
# Shown in the footer: why the reader gets this mail.
why = "Chrysanthemum Digest のニュースレターに登録いただいた方にお送りしています。"

[edition]
# {edition} becomes the edition id, e.g. 2026-W48.
subject = "Chrysanthemum Digest {edition} 今週の注目記事"
intro = "今週も Chrysanthemum Digest をお読みいただきありがとうございます。"
preheader = "今週の注目記事を、要点とあわせてお届けします。"
# compose without ARTICLE arguments takes the articles published within this span.
since = "7d"
# Whom the greeting addresses when a subscriber has no name (and on the public archive
# page): 「読者の皆さま、こんにちは。」 A reader with a name gets 「山田 花子 さん、…」.
greeting_fallback = "読者の皆さま"
# Each article's sources: "cards" (title, publisher and date, ✅ points, link),
# "links" (one line each) or "none". See docs/articles.md.
sources = "cards"
# The article body in the email: "none" (the card sums it up) or "excerpt" (its first
# paragraphs, at most excerpt_length characters).
body = "none"
excerpt_length = 200

[smtp]
# "capture" writes every message to outbox/ (a Maildir): nothing leaves the machine.
# A relay: "smtp://relay.example.jp:587" (STARTTLS) or "smtps://relay.example.jp:465".
url = "capture"
# username = "digest@example.jp"
# password_file = "~/.config/digest-mail/smtp-password"
# timeout = 30.0
# Connections in the pool, and messages per second (0: no limit).
# concurrency = 8
# rate = 0.0
# rate_per_hour = 0
# How long 4xx answers are retried before a delivery counts as failed, and the first
# wait between tries (it doubles each time, up to 15 minutes).
# retry_for = "1h"
# retry_backoff = "30s"
# A relay whose certificate a private CA signed: that CA's PEM file (relative to here).
# ca_file = "relay-ca.pem"
# Only for a test relay with a self-signed certificate.
# insecure_skip_verify = false
# The SMTP client: "pipelining" (one round trip per group of commands) or "aiosmtplib"
# (the lock-step library client, a fallback).
# client = "pipelining"

[lists]
# File stems under subscribers/: staff.csv receives test-send, weekly.csv the edition.
staff = "staff"
default = "weekly"

[unsubscribe]
# The one-click (RFC 8058) endpoint that `digest-mail serve` answers behind your web server.
base_url = "https://chrysanthemum-digest.example.jp/unsubscribe"
mailto = "unsubscribe@example.jp"
# key_file = "~/.config/digest-mail/unsubscribe.key"

[archive]
# Where the archive/ folder is published; the email's "view in browser" link points here.
base_url = "https://chrysanthemum-digest.example.jp/newsletter"
# The archive page is public: its unsubscribe link goes here instead ("#" when empty).
# subscribe_url = "https://chrysanthemum-digest.example.jp/newsletter/subscribe"

[dkim]
# Sign with DKIM when domain and selector are set (the key: DIGEST_MAIL_DKIM_KEY or
# key_file); publish the public key at <selector>._domainkey.<domain>.
# domain = "example.jp"
# selector = "digest2026"
# key_file = "~/.config/digest-mail/dkim.pem"

[serve]
# `digest-mail serve`: the unsubscribe endpoint listens here (put a proxy in front).
host = "127.0.0.1"
port = 8025

[ledger]
# What was sent to whom. Empty: the embedded SQLite file var/ledger.sqlite3 (one host).
# postgresql://USER@HOST:PORT/DATABASE shares it between hosts (docs/deployment.md); the
# password goes in DIGEST_MAIL_LEDGER_PASSWORD or an owner-only .pgpass-format file:
# url = "postgresql://digest_mail@db.example.jp:5432/digest_mail"
url = ""
# passfile = "secrets/ledger.pgpass"
passfile = ""

# Weekly sends, run by `digest-mail schedule run-due` from cron or a systemd timer.
# [[schedule]]
# name = "weekly"
# list = "weekly"
# cron = "0 7 * * MON"
# timezone = "Asia/Tokyo"
# edition = "approved"
# late_after = "6h"
"""

SAMPLE_ARTICLE = """\
---
title: ようこそ digest-mail へ:最初のニュースレターを作るまで
url: https://chrysanthemum-digest.example.jp/articles/welcome-to-digest-mail
published: {published}
lead: >-
  これはサンプル記事です。articles/ に記事を書き、compose で下書きを作り、
  test-send でスタッフに届けてから、購読者に配信します。
category: お知らせ
points:
  - 記事は articles/ に 1 本ずつ、YAML の前付けと Markdown の本文で書きます。
  - compose は直近 7 日間に公開された記事から下書きを作ります。
  - 送信先を設定するまで、メールは outbox/ に保存され、外には出ません。
sources:
  - title: digest-mail の使い方
    url: https://chrysanthemum-digest.example.jp/newsletter
    published: {published}
---

## 最初の一通

### 何から始めればいい?

*記事を書き、下書きを確かめ、スタッフに送る。*

このファイルを消して、サイトの記事を articles/ に置きましょう。サイトのフィードがあれば
`digest-mail articles import https://…/feed.xml` で取り込めます。

## 🚩 結論!

subscribers/staff.csv に自分のアドレスを書いてから、test-send で届き方を確かめましょう。
"""

STAFF_HEADER = "email,name\n"
WEEKLY_HEADER = "email,name,status,subscribed_at\n"


@dataclass(frozen=True)
class InitReport:
    root: Path
    files: tuple[Path, ...]
    staff: tuple[str, ...]
    next_commands: tuple[str, ...]
    # Settings still on a reserved example domain: the editor must set their own.
    sample_identity: tuple[str, ...] = ()


def packaged_templates() -> Traversable:
    """The default email templates shipped inside the package."""
    return importlib.resources.files("digest_mail").joinpath("templates", "email")


def _walk(folder: Traversable, prefix: Path = Path()) -> Iterator[tuple[Path, bytes]]:
    for item in sorted(folder.iterdir(), key=lambda t: t.name):
        if item.name.startswith((".", "__")):
            continue
        if item.is_dir():
            yield from _walk(item, prefix / item.name)
        else:
            yield prefix / item.name, item.read_bytes()


def _write_new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # 'x': never replace a file, even one that appeared since the emptiness check.
    with path.open("xb") as handle:
        handle.write(data)


def _staff_csv(addresses: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    checked = []
    for address in addresses:
        email, _ = normalize_address(address.strip())
        if email not in checked:
            checked.append(email)
    return STAFF_HEADER + "".join(f"{email},\n" for email in checked), tuple(checked)


def init_workspace(root: Path, *, staff: Sequence[str] = (), today: dt.date) -> InitReport:
    """Create a workspace in ``root`` (missing or empty); refuse to touch anything there."""
    root = Path(root)
    shown = os.fspath(root) if root.name else os.fspath(root.resolve())
    if root.exists() and not root.is_dir():
        raise DigestMailError(
            f"{shown} exists and is not a folder", hint="choose a new folder name"
        )
    if root.is_dir() and any(root.iterdir()):
        raise DigestMailError(
            f"{shown} is not empty: init never overwrites files",
            hint="choose a new or empty folder, e.g. 'digest-mail init weekly-news'",
        )
    staff_text, staff_addresses = _staff_csv(staff)
    files: list[tuple[Path, bytes]] = [
        (Path(CONFIG_NAME), CONFIG_TEMPLATE.encode()),
        (Path(".gitignore"), GITIGNORE.encode()),
        (Path("subscribers", "staff.csv"), staff_text.encode()),
        (Path("subscribers", "weekly.csv"), WEEKLY_HEADER.encode()),
        (
            Path("articles", f"{today.isoformat()}-welcome.md"),
            SAMPLE_ARTICLE.format(published=today.isoformat()).encode(),
        ),
    ]
    templates = Path("templates", "email")
    files += [(templates / rel, data) for rel, data in _walk(packaged_templates())]
    root.mkdir(parents=True, exist_ok=True)
    for relative, data in files:
        _write_new(root / relative, data)
    commands = ("digest-mail compose", "digest-mail check", "digest-mail test-send")
    return InitReport(
        root=root,
        files=tuple(relative for relative, _ in files),
        staff=staff_addresses,
        next_commands=commands,
        sample_identity=tuple(
            s.key for s in sample_identity(load_settings(root / CONFIG_NAME, environ={}))
        ),
    )
