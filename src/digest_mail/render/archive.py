"""The web archive: each sent edition as a public static page, an index and an Atom feed.

``archive/`` is a plain folder any web server can host at ``[archive] base_url``:

    archive/index.html              every edition, newest first, Japanese dates
    archive/feed.xml                Atom feed of the newest editions
    archive/<edition>/index.html    the email's HTML with neutral per-recipient values
    archive/<edition>/edition.json  what the index and feed are rebuilt from

The page is public, so the per-recipient placeholders get neutral values
(:func:`digest_mail.mail.placeholders.neutral_values`): the greeting fallback for the
name, 「ご登録のメールアドレス」 for the address, the subscription page (or ``#``) for
the unsubscribe link. A placeholder left over means the page would leak or break, so
publishing stops instead.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2

from digest_mail.config import Settings, Workspace
from digest_mail.content.edition import check_edition_id
from digest_mail.errors import DigestMailError
from digest_mail.files import display_path, keep_mode, new_temp_file
from digest_mail.mail.placeholders import PLACEHOLDERS, fill, neutral_values
from digest_mail.render.draft import Draft
from digest_mail.render.renderer import japanese_date

__all__ = [
    "ArchivedEdition",
    "archive_page",
    "archived_editions",
    "edition_url",
    "publish_after_campaign",
    "publish_archive",
    "render_feed",
    "render_index",
]

FEED_ENTRIES = 50
ATOM = "http://www.w3.org/2005/Atom"
_LEFTOVER = re.compile(r"@@[A-Za-z0-9_]+@@")
_META = "edition.json"

_INDEX_TEMPLATE = """\
<!doctype html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="alternate" type="application/atom+xml" title="{{ title }}" href="feed.xml">
<style>
body { margin: 0; background: #f6f3ee; color: #2b2b2b;
  font-family: "Hiragino Kaku Gothic ProN", "Noto Sans JP", Meiryo, sans-serif; line-height: 1.7; }
main { max-width: 40rem; margin: 0 auto; padding: 2rem 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
ol { list-style: none; padding: 0; }
li { background: #fff; border-radius: 6px; padding: 1rem 1.25rem; margin: 0 0 1rem; }
time { color: #6b6b6b; font-size: .875rem; }
a { color: #8a3b12; }
.subject { display: block; font-size: 1.125rem; font-weight: bold; }
.articles { color: #4b4b4b; font-size: .875rem; margin: .5rem 0 0; }
</style>
</head>
<body>
<main>
<h1>{{ title }}</h1>
<p>{{ editions|length }} 号 ・ <a href="feed.xml">Atom フィード</a>
{%- if site_url %} ・ <a href="{{ site_url }}">{{ name }}</a>{% endif %}</p>
<ol>
{%- for edition in editions %}
<li>
{%- set day = edition.published_local.date() %}
<time datetime="{{ day.isoformat() }}">{{ day|japanese_date }}</time>
<a class="subject" href="{{ edition.id }}/">{{ edition.subject }}</a>
{%- if edition.preheader %}
<p>{{ edition.preheader }}</p>
{%- endif %}
{%- if edition.articles %}
<p class="articles">{{ edition.articles|map(attribute="title")|join(" ／ ") }}</p>
{%- endif %}
</li>
{%- endfor %}
</ol>
</main>
</body>
</html>
"""


@dataclass(frozen=True)
class ArchivedEdition:
    """One published edition, as its ``edition.json`` in the archive records it."""

    id: str
    subject: str
    preheader: str
    articles: tuple[dict[str, str], ...]
    content_hash: str
    published: dt.datetime
    updated: dt.datetime
    tz: dt.tzinfo

    @property
    def published_local(self) -> dt.datetime:
        return self.published.astimezone(self.tz)


def _timezone(settings: Settings) -> dt.tzinfo:
    """The newsletter's time zone: the first schedule's, else Japan's."""
    name = settings.schedules[0].timezone if settings.schedules else "Asia/Tokyo"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return dt.timezone(dt.timedelta(hours=9), "JST")


def edition_url(settings: Settings, edition_id: str) -> str:
    """Where the page of ``edition_id`` is served: the email's view-in-browser link."""
    return f"{settings.archive.base_url.rstrip('/')}/{edition_id}/"


def archive_page(draft: Draft, settings: Settings) -> str:
    """The draft's HTML with neutral per-recipient values (pure; no personal data)."""
    page = fill(draft.html, neutral_values(settings))
    leftover = _LEFTOVER.search(page)
    if leftover:
        raise DigestMailError(
            f"{display_path(draft.path)}/index.html: placeholder {leftover.group(0)} "
            "has no neutral value for the public archive",
            hint="use only " + ", ".join(PLACEHOLDERS.values()) + " in the templates",
        )
    feed_link = (
        '<link rel="alternate" type="application/atom+xml" '
        f'title="{html.escape(_archive_title(settings))}" href="../feed.xml">\n'
        f'<link rel="canonical" href="{html.escape(edition_url(settings, draft.id))}">\n'
    )
    head_end = page.lower().find("</head>")
    if head_end >= 0:
        page = page[:head_end] + feed_link + page[head_end:]
    return page


def _archive_title(settings: Settings) -> str:
    return f"{settings.newsletter.name} バックナンバー"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The umask decides (022: 0644, readable by the web server), as for any new file.
    handle, temporary = new_temp_file(path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        keep_mode(temporary, path)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _parse_time(value: Any, *, path: Path, key: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise DigestMailError(
            f"{display_path(path)}: {key}: {value!r} is not a date and time",
            hint="archive the edition again: digest-mail archive EDITION",
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _read_edition(path: Path, tz: dt.tzinfo) -> ArchivedEdition:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DigestMailError(
            f"{display_path(path)} is damaged: {exc}",
            hint="archive the edition again: digest-mail archive EDITION",
        ) from None
    if not isinstance(meta, dict):
        raise DigestMailError(f"{display_path(path)} is damaged: not a JSON object")
    return ArchivedEdition(
        # The id becomes the edition's URL in the index and the feed.
        id=check_edition_id(meta.get("id", path.parent.name), field="id", path=display_path(path)),
        subject=str(meta.get("subject", "")),
        preheader=str(meta.get("preheader", "")),
        articles=tuple(
            {str(k): str(v) for k, v in a.items()}
            for a in meta.get("articles", [])
            if isinstance(a, dict)
        ),
        content_hash=str(meta.get("content_hash", "")),
        published=_parse_time(meta.get("published"), path=path, key="published"),
        updated=_parse_time(meta.get("updated", meta.get("published")), path=path, key="updated"),
        tz=tz,
    )


def archived_editions(workspace: Workspace) -> list[ArchivedEdition]:
    """Every edition in ``archive/``, newest first."""
    folder = workspace.archive_dir
    if not folder.is_dir():
        return []
    tz = _timezone(workspace.settings)
    editions = [
        _read_edition(meta, tz)
        for meta in folder.glob(f"*/{_META}")
        if not meta.parent.name.startswith(".")
    ]
    editions.sort(key=lambda e: (e.published, e.id), reverse=True)
    return editions


def render_index(editions: Sequence[ArchivedEdition], settings: Settings) -> str:
    """``archive/index.html``: every edition, newest first, linked by subject."""
    env = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    env.filters["japanese_date"] = japanese_date
    return env.from_string(_INDEX_TEMPLATE).render(
        title=_archive_title(settings),
        name=settings.newsletter.name,
        site_url=settings.newsletter.site_url,
        editions=list(editions),
    )


def _atom_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def render_feed(
    editions: Sequence[ArchivedEdition], settings: Settings, *, now: dt.datetime
) -> bytes:
    """``archive/feed.xml``: an Atom 1.0 feed of the newest editions."""
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    base = settings.archive.base_url.rstrip("/")
    feed = ET.Element(f"{{{ATOM}}}feed", {"{http://www.w3.org/XML/1998/namespace}lang": "ja"})
    sub(feed, "id", f"{base}/")
    sub(feed, "title", _archive_title(settings))
    sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/feed.xml")
    sub(feed, "link", rel="alternate", type="text/html", href=f"{base}/")
    newest = max((e.updated for e in editions), default=now)
    sub(feed, "updated", _atom_time(newest))
    author = sub(feed, "author")
    sub(author, "name", settings.newsletter.name)
    if settings.newsletter.site_url:
        sub(author, "uri", settings.newsletter.site_url)
    sub(feed, "generator", "digest-mail")
    for edition in list(editions)[:FEED_ENTRIES]:
        entry = sub(feed, "entry")
        url = edition_url(settings, edition.id)
        sub(entry, "id", url)
        sub(entry, "title", edition.subject)
        sub(entry, "link", rel="alternate", type="text/html", href=url)
        sub(entry, "published", _atom_time(edition.published))
        sub(entry, "updated", _atom_time(edition.updated))
        titles = " ／ ".join(a.get("title", "") for a in edition.articles)
        sub(entry, "summary", edition.preheader or titles, type="text")
        if edition.articles:
            items = "".join(
                f'<li><a href="{html.escape(a.get("url", ""))}">'
                f"{html.escape(a.get('title', ''))}</a></li>"
                for a in edition.articles
            )
            sub(entry, "content", f"<ul>{items}</ul>", type="html")
    ET.indent(feed)
    document: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def publish_archive(workspace: Workspace, draft: Draft, *, now: dt.datetime | None = None) -> Path:
    """Publish ``draft`` as ``archive/<edition>/index.html``; rebuild the index and feed.

    Publishing the same content again changes nothing but the files' rewrite; a new
    rendering of an edition keeps its first publication time and moves ``updated``.
    Returns the path of the edition's page.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    settings = workspace.settings
    page = archive_page(draft, settings)
    folder = workspace.archive_dir / draft.id
    meta_path = folder / _META
    published = updated = now
    if meta_path.is_file():
        previous = _read_edition(meta_path, dt.UTC)
        published = previous.published
        updated = previous.updated if previous.content_hash == draft.content_hash else now
    meta = {
        "id": draft.id,
        "subject": draft.subject,
        "preheader": draft.preheader,
        "url": edition_url(settings, draft.id),
        "content_hash": draft.content_hash,
        "published": published.isoformat(),
        "updated": updated.isoformat(),
        "articles": [
            {k: str(a.get(k, "")) for k in ("title", "url", "published", "category")}
            for a in draft.articles
        ],
    }
    target = folder / "index.html"
    _write_atomic(target, page.encode("utf-8"))
    _write_atomic(meta_path, (json.dumps(meta, ensure_ascii=False, indent=2) + "\n").encode())
    editions = archived_editions(workspace)
    _write_atomic(workspace.archive_dir / "index.html", render_index(editions, settings).encode())
    _write_atomic(workspace.archive_dir / "feed.xml", render_feed(editions, settings, now=now))
    return target


class FinishedCampaign(Protocol):
    """What :func:`publish_after_campaign` needs of a ``campaign.CampaignReport``."""

    @property
    def kind(self) -> str: ...
    @property
    def dry_run(self) -> bool: ...
    @property
    def complete(self) -> bool: ...
    @property
    def total(self) -> int: ...


def publish_after_campaign(
    workspace: Workspace, draft: Draft, report: FinishedCampaign, *, now: dt.datetime | None = None
) -> Path | None:
    """Publish the edition once a real campaign has finished: nothing queued, deferred or
    uncertain. Test sends, dry runs and a list with nobody on it never publish.
    Returns the page, or None."""
    if report.kind != "campaign" or report.dry_run or not report.complete or report.total == 0:
        return None
    return publish_archive(workspace, draft, now=now)
