"""`digest-mail archive`: public static pages, an index with Japanese dates, an Atom feed."""

from __future__ import annotations

import datetime as dt
import email
import json
import re
from pathlib import Path

import feedparser
import pytest

from digest_mail.config import Workspace, find_workspace
from digest_mail.render.archive import archived_editions, publish_archive
from digest_mail.render.compose import compose
from digest_mail.render.draft import Draft, load_draft

BASE = "https://chrysanthemum-digest.example.jp/newsletter"
TODAY = dt.date(2026, 11, 25)
# 23:30 UTC on the 22nd is the 23rd in Japan: the index shows the reader's date.
SENT_W47 = dt.datetime(2026, 11, 22, 23, 30, tzinfo=dt.UTC)
SENT_W48 = dt.datetime(2026, 11, 30, 0, 5, tzinfo=dt.UTC)


def _compose(ws: Workspace, edition: str, *, subject: str | None = None) -> Draft:
    return compose(ws, since="3650d", today=TODAY, edition_id=edition, subject=subject)


@pytest.fixture
def ws(workspace: Path) -> Workspace:
    return find_workspace(workspace, environ={})


def test_archive_command_publishes_page_index_and_feed(ws: Workspace, run) -> None:
    _compose(ws, "2026-W48")
    assert run("send", "2026-W48", "--list", "weekly", "--yes").exit_code == 0
    result = run("archive", "2026-W48")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"Published archive/2026-W48/index.html  ({BASE}/2026-W48/)\n"
        "Rebuilt archive/index.html and archive/feed.xml (1 edition)\n"
    )
    assert sorted(str(p.relative_to(ws.archive_dir)) for p in ws.archive_dir.rglob("*")) == [
        "2026-W48",
        "2026-W48/edition.json",
        "2026-W48/index.html",
        "feed.xml",
        "index.html",
    ]
    as_json = json.loads(run("archive", "--json").output)
    assert as_json == {
        "edition": "2026-W48",
        "page": "archive/2026-W48/index.html",
        "url": f"{BASE}/2026-W48/",
        "index": "archive/index.html",
        "feed": "archive/feed.xml",
        "editions": 1,
    }


def test_archive_page_has_neutral_values_only(ws: Workspace) -> None:
    draft = _compose(ws, "2026-W48")
    assert "@@greeting@@" in draft.html and "@@unsubscribe_url@@" in draft.html
    # The email's "view in browser" link is where this page is served.
    assert f'href="{BASE}/2026-W48/"' in draft.html
    assert f"{BASE}/2026-W48/" in draft.text
    page = publish_archive(ws, draft, now=SENT_W48).read_text(encoding="utf-8")
    assert "@@" not in page
    assert "token" not in page
    assert "読者の皆さま、こんにちは。" in page
    assert '<a href="#"' in page
    assert "このメールは ご登録のメールアドレス 宛にお送りしています。" in page
    assert ws.settings.unsubscribe.base_url not in page
    assert f'<link rel="canonical" href="{BASE}/2026-W48/">' in page
    assert '<link rel="alternate" type="application/atom+xml"' in page
    # Everything but the three placeholders is the email as rendered.
    neutral = (
        draft.html.replace("@@greeting@@", ws.settings.edition.greeting_fallback)
        .replace("@@email@@", "ご登録のメールアドレス")
        .replace("@@unsubscribe_url@@", "#")
    )
    assert re.sub(r"<link rel=\"(alternate|canonical)\"[^>]*>\n", "", page) == neutral


def test_subscribe_url_replaces_the_unsubscribe_link(workspace: Path) -> None:
    config = workspace / "digest-mail.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            f'base_url = "{BASE}"',
            f'base_url = "{BASE}"\nsubscribe_url = "{BASE}/subscribe?from=archive&lang=ja"',
        ),
        encoding="utf-8",
    )
    ws = find_workspace(workspace, environ={})
    assert ws.settings.archive.subscribe_url.endswith("lang=ja")
    page = publish_archive(ws, _compose(ws, "2026-W48"), now=SENT_W48).read_text(encoding="utf-8")
    assert f'href="{BASE}/subscribe?from=archive&amp;lang=ja"' in page


def test_index_is_newest_first_with_japanese_dates(ws: Workspace) -> None:
    publish_archive(ws, _compose(ws, "2026-W47", subject="先週号 {edition}"), now=SENT_W47)
    publish_archive(ws, _compose(ws, "2026-W48", subject="今週号 {edition}"), now=SENT_W48)
    index = (ws.archive_dir / "index.html").read_text(encoding="utf-8")
    pattern = r'<time datetime="([\d-]+)">(.+?)</time>\n<a class="subject" href="([^"]+)">(.+?)</a>'
    entries = re.findall(pattern, index)
    assert entries == [
        ("2026-11-30", "2026年11月30日", "2026-W48/", "今週号 2026-W48"),
        ("2026-11-23", "2026年11月23日", "2026-W47/", "先週号 2026-W47"),
    ]
    assert '<html lang="ja">' in index
    assert "2 号" in index


def test_feed_parses_back_with_the_same_entries(ws: Workspace) -> None:
    w47 = _compose(ws, "2026-W47", subject="先週号 {edition}")
    publish_archive(ws, w47, now=SENT_W47)
    w48 = _compose(ws, "2026-W48", subject="今週号 <{edition}> & 特集")
    publish_archive(ws, w48, now=SENT_W48)

    parsed = feedparser.parse((ws.archive_dir / "feed.xml").read_bytes())
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "Chrysanthemum Digest バックナンバー"
    assert parsed.feed.id == f"{BASE}/"
    assert parsed.feed.updated == "2026-11-30T00:05:00Z"
    links = {link.rel: link.href for link in parsed.feed.links}
    assert links == {"self": f"{BASE}/feed.xml", "alternate": f"{BASE}/"}

    archived = archived_editions(ws)
    assert [(e.id, e.subject) for e in archived] == [
        ("2026-W48", "今週号 <2026-W48> & 特集"),
        ("2026-W47", "先週号 2026-W47"),
    ]
    got = [(e.id, e.title, e.link, e.published) for e in parsed.entries]
    assert got == [
        (
            f"{BASE}/2026-W48/",
            "今週号 <2026-W48> & 特集",
            f"{BASE}/2026-W48/",
            "2026-11-30T00:05:00Z",
        ),
        (f"{BASE}/2026-W47/", "先週号 2026-W47", f"{BASE}/2026-W47/", "2026-11-22T23:30:00Z"),
    ]
    first = parsed.entries[0]
    assert first.summary == w48.preheader
    article_urls = re.findall(r'href="([^"]+)"', first.content[0].value)
    assert article_urls == [a["url"] for a in w48.articles]


def test_republishing_keeps_dates_unless_the_content_changed(ws: Workspace) -> None:
    draft = _compose(ws, "2026-W48")
    publish_archive(ws, draft, now=SENT_W48)
    later = SENT_W48 + dt.timedelta(hours=3)
    publish_archive(ws, draft, now=later)
    (same,) = archived_editions(ws)
    assert (same.published, same.updated) == (SENT_W48, SENT_W48)

    changed = _compose(ws, "2026-W48", subject="訂正版 {edition}")
    publish_archive(ws, changed, now=later)
    (edited,) = archived_editions(ws)
    assert (edited.published, edited.updated, edited.subject) == (
        SENT_W48,
        later,
        "訂正版 2026-W48",
    )


def test_an_unknown_placeholder_stops_publishing(ws: Workspace) -> None:
    from digest_mail.errors import DigestMailError

    draft = _compose(ws, "2026-W48")
    page = draft.path / "index.html"
    page.write_text(draft.html.replace("</body>", "<p>@@phone@@</p></body>"), encoding="utf-8")
    with pytest.raises(DigestMailError) as caught:
        publish_archive(ws, load_draft(ws, "2026-W48"))
    assert str(caught.value) == (
        "drafts/2026-W48/index.html: placeholder @@phone@@ has no neutral value for "
        "the public archive"
    )
    assert caught.value.hint == (
        "use only @@greeting@@, @@name@@, @@email@@, @@unsubscribe_url@@ in the templates"
    )
    assert not ws.archive_dir.exists()
    assert load_draft(ws, "2026-W48").html.count("@@phone@@") == 1


def test_archive_without_drafts_says_what_to_do(ws: Workspace, run) -> None:
    result = run("archive")
    assert result.exit_code == 1
    assert result.output == "Error: no drafts in drafts/\nHint: run 'digest-mail compose' first\n"


def test_archive_after_a_real_campaign_holds_no_recipient_data(ws: Workspace) -> None:
    """Send the edition to the sample list through the capture transport, publish as the
    send command does, and look for every recipient's address, name and token."""
    from digest_mail.audience.csvfiles import scan_list
    from digest_mail.audience.rows import Recipient
    from digest_mail.delivery.campaign import run_campaign
    from digest_mail.delivery.testsend import send_test
    from digest_mail.render.archive import publish_after_campaign

    draft = _compose(ws, "2026-W48")
    test_report = send_test(ws, draft)
    assert publish_after_campaign(ws, draft, test_report, now=SENT_W48) is None
    assert not ws.archive_dir.exists()

    report = run_campaign(ws, draft, "weekly")
    assert report.complete and report.sent > 0
    page_path = publish_after_campaign(ws, draft, report, now=SENT_W48)
    assert page_path == ws.archive_dir / "2026-W48" / "index.html"

    published = "\n".join(
        p.read_text(encoding="utf-8") for p in ws.archive_dir.rglob("*") if p.is_file()
    )
    recipients = [r for r in scan_list(ws.list_path("weekly")) if isinstance(r, Recipient)]
    assert len(recipients) >= report.sent
    for recipient in recipients:
        assert recipient.email not in published
        if recipient.name:
            assert recipient.name not in published
    captured = [p for p in ws.outbox_dir.rglob("*") if p.is_file() and p.parent.name == "new"]
    tokens = set()
    for path in captured:
        header = email.message_from_bytes(path.read_bytes())["List-Unsubscribe"]
        tokens.update(re.findall(r"[?&]t=([A-Za-z0-9_.-]+)", str(header)))
    assert len(tokens) >= report.sent
    assert not any(token in published for token in tokens)
    assert ws.settings.unsubscribe.base_url not in published
    assert "mailto:" + ws.settings.unsubscribe.mailto not in published


def test_a_scheduled_send_publishes_the_archive(workspace: Path, run) -> None:
    """run-due is how the weekly edition really goes out: it publishes like send does."""
    from schedule_helpers import set_schedules, weekly

    set_schedules(workspace, weekly(cron="0 8 * * MON"))
    ws = find_workspace(workspace, environ={})
    _compose(ws, "2026-W48")
    assert run("approve", "2026-W48").exit_code == 0
    result = run("schedule", "run-due", "--now", "2026-11-30T08:05:00+09:00")
    assert result.exit_code == 0, result.output
    assert "archive not published" not in result.output
    (edition,) = archived_editions(ws)
    assert edition.id == "2026-W48"
    assert (ws.archive_dir / "2026-W48" / "index.html").is_file()


def test_send_publishes_the_archive_and_test_send_does_not(ws: Workspace, run) -> None:
    _compose(ws, "2026-W48")
    assert run("test-send", "2026-W48").exit_code == 0
    dry = run("send", "2026-W48", "--list", "weekly", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert not ws.archive_dir.exists()

    sent = run("send", "2026-W48", "--list", "weekly", "--yes")
    assert sent.exit_code == 0, sent.output
    assert sent.output.endswith(f"Archived archive/2026-W48/index.html  ({BASE}/2026-W48/)\n")
    (edition,) = archived_editions(ws)
    assert edition.id == "2026-W48"
    as_json = run("send", "2026-W48", "--list", "weekly", "--yes", "--json")
    assert as_json.exit_code == 0
    json.loads(as_json.output)  # nothing but the report on stdout


def test_send_warns_but_succeeds_when_the_archive_cannot_be_written(ws: Workspace, run) -> None:
    _compose(ws, "2026-W48")
    ws.archive_dir.write_text("not a folder\n", encoding="utf-8")
    sent = run("send", "2026-W48", "--list", "weekly", "--yes")
    assert sent.exit_code == 0, sent.output
    assert "Warning: the web archive was not updated: " in sent.output
    assert "Hint: fix that, then run 'digest-mail archive 2026-W48'" in sent.output


def test_a_campaign_to_an_empty_list_publishes_nothing(ws: Workspace, run) -> None:
    _compose(ws, "2026-W48")
    ws.list_path("weekly").write_text("email,name\n", encoding="utf-8")
    sent = run("send", "2026-W48", "--list", "weekly", "--yes")
    assert sent.exit_code == 1, sent.output
    assert sent.output.startswith("Error: nothing to send: list weekly has no subscribed reader")
    assert not ws.archive_dir.exists()
