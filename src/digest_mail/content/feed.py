"""Articles from the site's feed: RSS or Atom entries become article files.

feedparser reads the feed (a file, or fetched over https only, at most 20 MB); every
piece of HTML in it (content, summary) goes through nh3 before anything else sees it,
and is then stored as Markdown or plain text (:mod:`digest_mail.content.feedhtml`), so a
``<script>`` in the site's feed can never reach an email template. Each written file is
read back with :func:`digest_mail.content.articles.load_article`: what import writes,
compose accepts.

One importer, read top to bottom: reading the feed, then each entry to an article's
front matter and body, then :func:`import_feed`, which skips what is already an article
and writes the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import hashlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import feedparser
import yaml

from digest_mail import __version__
from digest_mail.config import Workspace, mask_url
from digest_mail.content.articles import (
    CONTROL_CHARACTER,
    PLACEHOLDER_SYNTAX,
    load_article,
)
from digest_mail.content.feedhtml import escape_markdown, html_to_markdown, html_to_text
from digest_mail.errors import DigestMailError, InputError
from digest_mail.files import display_path, new_temp_file

__all__ = [
    "FeedEntryProblem",
    "ImportReport",
    "ImportedArticle",
    "SkippedEntry",
    "import_feed",
    "read_feed",
]

FETCH_TIMEOUT = 30.0
MAX_FEED_BYTES = 20 * 1024 * 1024
LEAD_MAX_CHARS = 300
_ACCEPT = "application/atom+xml, application/rss+xml, application/xml;q=0.9, */*;q=0.5"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


@dataclass(frozen=True)
class ImportedArticle:
    path: Path
    url: str
    title: str
    published: dt.date


@dataclass(frozen=True)
class SkippedEntry:
    url: str
    title: str
    reason: str


@dataclass(frozen=True)
class FeedEntryProblem:
    """An entry that could not become an article; ``entry`` says which (title or index)."""

    entry: str
    reason: str


@dataclass
class ImportReport:
    feed: str
    new: list[ImportedArticle] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)
    invalid: list[FeedEntryProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "feed": self.feed,
            "new": [
                {
                    "path": display_path(a.path),
                    "url": a.url,
                    "title": a.title,
                    "published": a.published.isoformat(),
                }
                for a in self.new
            ],
            "skipped": [{"url": s.url, "title": s.title, "reason": s.reason} for s in self.skipped],
            "invalid": [{"entry": p.entry, "reason": p.reason} for p in self.invalid],
        }


# ---------------------------------------------------------------- reading the feed


def _is_url(source: str) -> bool:
    return urlsplit(source).scheme in {"http", "https"}


class _RefuseDowngrade(urllib.request.HTTPRedirectHandler):
    """An https feed that redirects to plain http is refused like a plain http address."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme != "https":
            fp.close()  # the redirect response holds the connection
            raise DigestMailError(
                f"{mask_url(req.full_url)}: redirected to {mask_url(newurl)}, which is not https",
                hint=_HTTP_HINT,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_HTTP_HINT = (
    "use the feed's https:// address; --allow-http fetches over plain http (anyone on the"
    " network path can then change its articles and links)"
)


def _read_local(path: Path, shown: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FEED_BYTES + 1)
    except FileNotFoundError:
        raise InputError(
            "no such feed file", path=shown, hint="give a path or an https:// URL"
        ) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a feed file", path=shown) from None
    if len(data) > MAX_FEED_BYTES:
        # The same limit as a fetched feed: feedparser holds the whole document in memory.
        raise InputError(f"the feed is larger than {MAX_FEED_BYTES} bytes", path=shown)
    return data


def read_feed(source: str | Path, *, allow_http: bool = False) -> Any:
    """Parse the feed at a path or https URL; raise if it is not a feed at all.

    Plain http (also through a redirect) only with ``allow_http``: a feed's links and
    images go to every reader, so nobody on the network path may rewrite them.
    """
    text = str(source)
    shown = mask_url(text)  # a password in the address is never printed
    headers: dict[str, str] = {}
    if _is_url(text):
        if urlsplit(text).scheme != "https" and not allow_http:
            raise DigestMailError(f"{shown}: a feed is fetched over https only", hint=_HTTP_HINT)
        request = urllib.request.Request(
            text,
            headers={
                "User-Agent": f"digest-mail/{__version__}",
                "Accept": _ACCEPT,
            },
        )
        handlers = [] if allow_http else [_RefuseDowngrade()]
        try:
            with urllib.request.build_opener(*handlers).open(
                request, timeout=FETCH_TIMEOUT
            ) as response:
                data = response.read(MAX_FEED_BYTES + 1)
                final_url = response.geturl()
                content_type = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response's socket
            raise DigestMailError(
                f"{shown}: the server answered {exc.code} {exc.reason}",
                hint="check the feed address in a browser",
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DigestMailError(
                f"{shown}: cannot fetch the feed ({reason})",
                hint="check the address and the network, or save the feed and import the file",
            ) from None
        if len(data) > MAX_FEED_BYTES:
            raise DigestMailError(f"{shown}: the feed is larger than {MAX_FEED_BYTES} bytes")
        # Relative links in the feed resolve against where it really came from.
        headers["content-location"] = final_url
        if content_type:
            headers["content-type"] = content_type
    else:
        data = _read_local(Path(text).expanduser(), text)
    parsed = feedparser.parse(data, response_headers=headers)
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        detail = f" ({problem})" if problem else ""
        raise InputError(
            f"not an RSS or Atom feed{detail}",
            path=shown,
            hint="give the address of the site's feed, e.g. https://…/feed.xml",
        )
    return parsed


# ---------------------------------------------------------------- entries to articles


class _Invalid(Exception):
    pass


def _normalize_url(url: str) -> str:
    """The form two article URLs are compared in (scheme/host case, fragment, trailing /)."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/") or "/"
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


def _https(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" and bool(parts.hostname) and not any(c.isspace() for c in url)


def _entry_date(entry: Mapping[str, Any]) -> dt.date:
    """The date as the feed wrote it, in the feed's own time zone (a JST morning stays that day)."""
    for key in ("published", "updated", "created"):
        raw = entry.get(key)
        if not raw:
            continue
        raw = str(raw).strip()
        try:
            return dt.datetime.fromisoformat(raw.replace("Z", "+00:00")).date()
        except ValueError:
            pass
        try:
            return email.utils.parsedate_to_datetime(raw).date()
        except (TypeError, ValueError, IndexError):
            pass
        parsed = entry.get(f"{key}_parsed")
        if parsed:
            return dt.date(parsed.tm_year, parsed.tm_mon, parsed.tm_mday)
    raise _Invalid("no published or updated date")


def _entry_image(entry: Mapping[str, Any]) -> str | None:
    candidates: list[str] = []
    for enclosure in entry.get("enclosures") or ():
        href = enclosure.get("href") or enclosure.get("url") or ""
        kind = enclosure.get("type") or ""
        if kind.startswith("image/") or (not kind and href.lower().endswith(_IMAGE_SUFFIXES)):
            candidates.append(href)
    for media in entry.get("media_content") or ():
        url = media.get("url") or ""
        kind = media.get("type") or ""
        medium = media.get("medium") or ""
        if (
            medium == "image"
            or kind.startswith("image/")
            or (not kind and not medium and url.lower().endswith(_IMAGE_SUFFIXES))
        ):
            candidates.append(url)
    for thumb in entry.get("media_thumbnail") or ():
        candidates.append(thumb.get("url") or "")
    # Only https images: an http one would be flagged by check and blocked by mail clients.
    return next((c.strip() for c in candidates if c and _https(c.strip())), None)


def _entry_body(entry: Mapping[str, Any]) -> str:
    contents = entry.get("content") or ()
    chosen = None
    for content in contents:
        if "html" in (content.get("type") or ""):
            chosen = content
            break
    if chosen is None and contents:
        chosen = contents[0]
    if chosen is not None:
        value = chosen.get("value") or ""
        if "html" in (chosen.get("type") or ""):
            return html_to_markdown(value)
        return escape_markdown(value.strip())
    detail = entry.get("summary_detail") or {}
    summary = entry.get("summary") or ""
    if "html" in (detail.get("type") or "text/html"):
        return html_to_markdown(summary)
    return escape_markdown(summary.strip())


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    # End at the last sentence mark when there is one in the second half.
    end = max(cut.rfind("。"), cut.rfind("!"), cut.rfind("?"), cut.rfind("．"))
    return cut[: end + 1] if end >= limit // 2 else cut.rstrip() + "…"


def _plain(value: str, detail: Mapping[str, Any] | None) -> str:
    kind = (detail or {}).get("type") or "text/html"
    if "html" in kind:
        return html_to_text(value)
    # ASCII whitespace only: an ideographic space (U+3000) in a Japanese title is meant.
    return re.sub(r"[ \t\r\n]+", " ", value).strip()


def _slug(url: str) -> str:
    """An ASCII slug from the URL path: Japanese titles make poor file names."""
    path = unquote(urlsplit(url).path)
    segments = [s for s in path.split("/") if s]
    for segment in reversed(segments):
        stem = re.sub(r"\.(html?|php|aspx?)$", "", segment, flags=re.IGNORECASE)
        slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
        if slug and slug not in {"index", "article", "articles", "entry", "post"}:
            return slug[:60].strip("-")
    return "article-" + hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]


def _front_matter(fields: Mapping[str, Any]) -> str:
    dumped = yaml.safe_dump(
        dict(fields), allow_unicode=True, sort_keys=False, default_flow_style=False, width=1000
    )
    return f"---\n{dumped}---\n"


def _existing_urls(folder: Path) -> dict[str, Path]:
    """Normalized url → file, for every article already in ``folder``."""
    urls: dict[str, Path] = {}
    if not folder.is_dir():
        return urls
    for path in sorted(folder.glob("*.md")):
        article = load_article(path)
        urls.setdefault(_normalize_url(article.url), path)
    return urls


def _write_new(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` or ``path-2``…, never replacing a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stem, suffix = path.stem, path.suffix
    candidate = path
    number = 1
    fd, temporary = new_temp_file(path.parent, prefix=".import-")
    try:
        with open(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        while True:
            try:
                # A hard link fails if the name exists: no race with another writer.
                os.link(temporary, candidate)
                return candidate
            except FileExistsError:
                number += 1
                candidate = path.with_name(f"{stem}-{number}{suffix}")
    finally:
        temporary.unlink()


def _label(entry: Mapping[str, Any], index: int) -> str:
    title = re.sub(r"[ \t\r\n]+", " ", str(entry.get("title") or "")).strip()
    return f"entry {index} ({title})" if title else f"entry {index}"


def _article_fields(entry: Mapping[str, Any]) -> dict[str, Any]:
    title = _plain(str(entry.get("title") or ""), entry.get("title_detail"))
    if not title:
        raise _Invalid("no title")
    url = str(entry.get("link") or "").strip()
    if not url:
        raise _Invalid("no link")
    if not _https(url):
        raise _Invalid(f"link {url!r} is not an absolute https URL")
    fields: dict[str, Any] = {"title": title, "url": url, "published": _entry_date(entry)}
    lead = _plain(str(entry.get("summary") or ""), entry.get("summary_detail"))
    if lead:
        fields["lead"] = _shorten(lead, LEAD_MAX_CHARS)
    tags = entry.get("tags") or ()
    for tag in tags:
        category = str(tag.get("label") or tag.get("term") or "").strip()
        if category:
            fields["category"] = category
            break
    image = _entry_image(entry)
    if image:
        fields["image"] = image
        fields["image_alt"] = title
    return fields


def _refuse_placeholders(fields: Mapping[str, Any], body: str) -> None:
    for name, value in [*fields.items(), ("body", body)]:
        found = PLACEHOLDER_SYNTAX.search(str(value))
        if found:
            raise _Invalid(
                f"{name}: {str(value)!r} contains {found.group()}, the syntax of a per-reader"
                " value (delivery would fill in each reader's own)"
            )


def _refuse_control_characters(fields: Mapping[str, Any], body: str) -> None:
    """A title with ESC ]0;… BEL reached the operator's terminal and then made every
    compose fail in MJML: the entry is invalid, named, and never written."""
    for name, value in [*fields.items(), ("body", body)]:
        found = CONTROL_CHARACTER.search(str(value))
        if found:
            raise _Invalid(
                f"{name}: {str(value)!r} contains a control character (U+{ord(found.group()):04X})"
            )


def import_feed(
    workspace: Workspace, source: str | Path, *, dry_run: bool = False, allow_http: bool = False
) -> ImportReport:
    """Write one article into ``articles/`` per new feed entry; report new, skipped, invalid.

    An entry whose url is already an article's (or appears twice in the feed) is skipped.
    """
    report = ImportReport(feed=mask_url(str(source)))
    parsed = read_feed(source, allow_http=allow_http)
    known = _existing_urls(workspace.articles_dir)
    seen: set[str] = set()
    for index, entry in enumerate(parsed.entries, start=1):
        label = _label(entry, index)
        try:
            fields = _article_fields(entry)
            body = _entry_body(entry)
            _refuse_placeholders(fields, body)
            _refuse_control_characters(fields, body)
        except _Invalid as exc:
            report.invalid.append(FeedEntryProblem(entry=label, reason=str(exc)))
            continue
        key = _normalize_url(fields["url"])
        if key in known or key in seen:
            reason = (
                f"already an article: {display_path(known[key])}"
                if key in known
                else "appears twice in the feed"
            )
            report.skipped.append(
                SkippedEntry(url=fields["url"], title=fields["title"], reason=reason)
            )
            continue
        published: dt.date = fields["published"]
        found = ImportedArticle(
            path=Path(), url=fields["url"], title=fields["title"], published=published
        )
        target = workspace.articles_dir / f"{published.isoformat()}-{_slug(fields['url'])}.md"
        text = _front_matter(fields) + ("\n" + body + "\n" if body else "")
        seen.add(key)
        if dry_run:
            report.new.append(dataclasses.replace(found, path=target))
            continue
        written = _write_new(target, text)
        try:
            load_article(written)
        except InputError as exc:
            written.unlink()
            report.invalid.append(FeedEntryProblem(entry=label, reason=exc.message))
            continue
        report.new.append(dataclasses.replace(found, path=written))
    return report
