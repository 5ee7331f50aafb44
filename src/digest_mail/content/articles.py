"""Articles: one Markdown file each, with YAML front matter, as the site publishes them.

Front matter is read with ``yaml.safe_load`` only (no Python object tags). Every problem
is an :class:`InputError` naming the file, the line of the field when known, and the fix.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from digest_mail.config import Workspace
from digest_mail.errors import InputError
from digest_mail.files import display_path

__all__ = [
    "PLACEHOLDER_SYNTAX",
    "Article",
    "Source",
    "excerpt",
    "load_article",
    "load_articles",
    "select_articles",
]

_FENCE = "---"
# The syntax of per-reader values (``@@email@@``). Delivery fills every such token it finds,
# so one inside an article's text or links would carry each reader's address or
# unsubscribe link wherever the article points (a tracker pixel's query string).
PLACEHOLDER_SYNTAX = re.compile(r"@@[A-Za-z0-9_]+@@")
PLACEHOLDER_HINT = (
    "per-reader values such as @@email@@ are filled only where the templates put them;"
    " remove it from the article"
)


# LibYAML's parser when present (several times faster); the constructors are the safe ones.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _FrontMatterLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader (no Python tags) that leaves dates as text.

    PyYAML's own timestamp constructor raises a bare ValueError for 2025-02-30 with no
    hint of the field; reading dates as text lets :func:`_date` name the field and line.
    """


_FrontMatterLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_KNOWN_FIELDS = (
    "title",
    "url",
    "published",
    "lead",
    "category",
    "image",
    "image_alt",
    "points",
    "sources",
)


_SOURCE_FIELDS = ("title", "url", "published", "publisher", "points")


@dataclass(frozen=True)
class Source:
    """A quoted source card: the news article an article section cites.

    ``points`` are the card's ✅ lines; ``publisher`` is shown as 出典 (the URL's host
    when not given).
    """

    title: str
    url: str
    published: dt.date | None = None
    publisher: str | None = None
    points: tuple[str, ...] = ()

    @property
    def shown_publisher(self) -> str:
        """The publisher, else the URL's host without a leading ``www.``."""
        if self.publisher:
            return self.publisher
        host = urlsplit(self.url).hostname or self.url
        return host.removeprefix("www.")


@dataclass(frozen=True)
class Article:
    path: Path
    slug: str
    title: str
    url: str
    published: dt.date
    lead: str = ""
    category: str = ""
    image: str | None = None
    image_alt: str | None = None
    points: tuple[str, ...] = ()
    sources: tuple[Source, ...] = ()
    body: str = ""


# Control characters other than TAB, LF and CR (layout): ESC, BEL, NUL, DEL, C1 …
CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class _Fields:
    """The front matter of one file, with the line each top-level key starts on."""

    def __init__(self, path: Path, data: Mapping[str, Any], lines: dict[str, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines
        self.shown = display_path(path)

    def error(self, field: str, message: str, hint: str | None = None) -> InputError:
        key = field.split(".", 1)[0].split("[", 1)[0]
        return InputError(
            message, path=self.shown, line=self.lines.get(key), field=field, hint=hint
        )

    def text(self, field: str, *, required: bool) -> str | None:
        value = self.data.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                raise InputError(
                    "missing required field",
                    path=self.shown,
                    field=field,
                    hint=f"add '{field}:' to the front matter between the '---' lines",
                )
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.error(field, f"expected text, got {type(value).__name__}")
        return self.own(field, str(value).strip())

    def own(self, field: str, value: str) -> str:
        """``value`` if it holds no per-reader placeholder (see PLACEHOLDER_SYNTAX) and
        no control character (an escape sequence for a terminal; MJML refuses them too,
        which made compose fail with a misleading "MJML does not compile")."""
        control = CONTROL_CHARACTER.search(value)
        if control:
            raise self.error(
                field,
                f"{value!r} contains a control character (U+{ord(control.group()):04X})",
                hint="remove it; only text, spaces and line breaks belong in an article",
            )
        found = PLACEHOLDER_SYNTAX.search(value)
        if found:
            raise self.error(
                field,
                f"{value!r} contains {found.group()}, the syntax of a per-reader value",
                hint=PLACEHOLDER_HINT,
            )
        return value


def _https_url(fields: _Fields, field: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.netloc or any(c.isspace() for c in value):
        raise fields.error(
            field,
            f"{value!r} is not an absolute https URL",
            hint="write the full address, e.g. https://chrysanthemum-digest.example.jp/articles/…",
        )
    return value


def _date(fields: _Fields, field: str, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise fields.error(field, f"{value!r} is not a date like 2025-02-20")


def _split_front_matter(path: Path, text: str) -> tuple[str, str, int]:
    """(front matter, body, line number of the body's first line)."""
    shown = display_path(path)
    hint = "start the file with a '---' line, the YAML fields, then another '---' line"
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != _FENCE:
        raise InputError(
            "no front matter: the first line must be '---'", path=shown, line=1, hint=hint
        )
    for index, line in enumerate(lines[1:], start=1):
        if line.rstrip("\r\n").rstrip() == _FENCE:
            return "".join(lines[1:index]), "".join(lines[index + 1 :]), index + 2
    raise InputError("front matter is not closed by a '---' line", path=shown, line=1, hint=hint)


def _parse_front_matter(path: Path, front: str) -> _Fields:
    shown = display_path(path)
    try:
        data = yaml.load(front, Loader=_FrontMatterLoader)  # a SafeLoader: no Python tags
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(
            f"front matter is not valid YAML: {problem}",
            path=shown,
            line=line,
            hint="quote values that contain ': ' or start with a special character",
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError("front matter must be 'key: value' lines", path=shown, line=2)
    lines: dict[str, int] = {}
    for number, line in enumerate(front.splitlines(), start=2):
        match = re.match(r"([A-Za-z_][\w-]*)\s*:", line)
        if match and match.group(1) not in lines:
            lines[match.group(1)] = number
    return _Fields(path, data, lines)


def _points(fields: _Fields, raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise fields.error(where, "expected a list of short sentences ('- …' lines)")
    points = []
    for index, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip():
            raise fields.error(f"{where}[{index}]", "expected a non-empty sentence")
        points.append(fields.own(f"{where}[{index}]", item.strip()))
    return tuple(points)


def _sources(fields: _Fields) -> tuple[Source, ...]:
    raw = fields.data.get("sources")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise fields.error("sources", "expected a list of {title, url, published}")
    sources = []
    for index, item in enumerate(raw):
        where = f"sources[{index}]"
        if not isinstance(item, dict):
            raise fields.error(where, "expected a mapping with title, url and published")
        unknown = sorted(set(item) - set(_SOURCE_FIELDS), key=str)
        if unknown:
            raise fields.error(
                f"{where}.{unknown[0]}",
                "unknown field",
                hint=f"known source fields: {', '.join(_SOURCE_FIELDS)}",
            )
        title, url = item.get("title"), item.get("url")
        if not isinstance(title, str) or not title.strip():
            raise fields.error(f"{where}.title", "missing source title")
        if not isinstance(url, str) or not url.strip():
            raise fields.error(f"{where}.url", "missing source url")
        published = item.get("published")
        publisher = item.get("publisher")
        if publisher is not None and (not isinstance(publisher, str) or not publisher.strip()):
            raise fields.error(
                f"{where}.publisher",
                "expected the publisher's name as text",
                hint="leave 'publisher:' out to show the URL's host",
            )
        sources.append(
            Source(
                title=fields.own(f"{where}.title", title.strip()),
                url=_https_url(fields, f"{where}.url", fields.own(f"{where}.url", url.strip())),
                published=None
                if published is None
                else _date(fields, f"{where}.published", published),
                publisher=fields.own(f"{where}.publisher", publisher.strip())
                if publisher
                else None,
                points=_points(fields, item.get("points"), f"{where}.points"),
            )
        )
    return tuple(sources)


# Lines of the site's article shape that are not running prose: headings, quoted source
# cards, lists, the tagline in *…*, and the ✅ / 🚩 / 💡 lines the card already shows.
_NOT_PROSE = re.compile(r"\s*(?:#|>|[-*+] |\d+\. |\*[^*]|✅|🚩|💡|\||<|```|---)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(.+?)\1")


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def excerpt(body: str, limit: int) -> str:
    """The body's first prose paragraphs, at most ``limit`` characters, as plain text.

    Paragraphs are taken whole while they fit; a first paragraph longer than ``limit`` is
    cut after its last 。 within the limit (or at the limit, with …). Markdown links and
    emphasis become their text.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*body.splitlines(), ""]:
        if not line.strip() or _NOT_PROSE.match(line):
            if current:
                paragraphs.append("".join(current))
                current = []
            continue
        # A soft line break is a space between Latin words, nothing between Japanese ones.
        if current and not (_wide(current[-1][-1]) and _wide(line.strip()[0])):
            current.append(" ")
        current.append(line.strip())
    out = ""
    for paragraph in paragraphs:
        text = _EMPHASIS.sub(r"\2", _LINK.sub(r"\1", paragraph))
        joined = f"{out}\n{text}" if out else text
        if len(joined) <= limit:
            out = joined
            continue
        if not out:
            cut = text[:limit].rfind("。")
            out = text[: cut + 1] if cut > 0 else text[: max(limit - 1, 0)] + "…"
        break
    return out


def load_article(path: Path | str) -> Article:
    """Read one article file; raise :class:`InputError` naming the file and field."""
    path = Path(path)
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError("no such article file", path=shown) from None
    except IsADirectoryError:
        raise InputError("is a folder, not an article file", path=shown) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=shown, hint="save the article as UTF-8") from None
    front, body, body_line = _split_front_matter(path, text)
    fields = _parse_front_matter(path, front)
    control = CONTROL_CHARACTER.search(body)
    if control:
        raise InputError(
            f"the body contains a control character (U+{ord(control.group()):04X})",
            path=shown,
            line=body_line + body.count("\n", 0, control.start()),
            hint="remove it; only text, spaces and line breaks belong in an article",
        )
    in_body = PLACEHOLDER_SYNTAX.search(body)
    if in_body:
        raise InputError(
            f"the body contains {in_body.group()}, the syntax of a per-reader value",
            path=shown,
            line=body_line + body.count("\n", 0, in_body.start()),
            hint=PLACEHOLDER_HINT,
        )
    unknown = sorted(set(fields.data) - set(_KNOWN_FIELDS), key=str)
    if unknown:
        raise fields.error(
            str(unknown[0]), "unknown field", hint=f"known fields: {', '.join(_KNOWN_FIELDS)}"
        )
    title = fields.text("title", required=True)
    url = fields.text("url", required=True)
    assert title is not None and url is not None
    if "published" not in fields.data or fields.data["published"] in (None, ""):
        fields.text("published", required=True)
    published = _date(fields, "published", fields.data["published"])
    image = fields.text("image", required=False)
    image_alt = fields.text("image_alt", required=False)
    if image is not None:
        image = _https_url(fields, "image", image)
        if image_alt is None:
            raise InputError(
                "an image needs alt text",
                path=fields.shown,
                line=fields.lines.get("image"),
                field="image_alt",
                hint="add 'image_alt:' describing the image",
            )
    return Article(
        path=path,
        slug=path.stem,
        title=title,
        url=_https_url(fields, "url", url),
        published=published,
        lead=fields.text("lead", required=False) or "",
        category=fields.text("category", required=False) or "",
        image=image,
        image_alt=image_alt if image is not None else None,
        points=_points(fields, fields.data.get("points"), "points"),
        sources=_sources(fields),
        body=body.strip("\n"),
    )


def load_articles(paths: Iterable[Path | str]) -> list[Article]:
    """Load ``paths`` in the order given (the editor's order is the edition's order)."""
    return [load_article(p) for p in paths]


def select_articles(
    workspace: Workspace,
    *,
    since: dt.timedelta | None,
    category: str | None,
    today: dt.date,
) -> list[Article]:
    """Articles in ``articles/`` published within ``since`` of ``today``, newest first.

    Newest first by ``published`` (file name among the same day): file names order
    nothing an editor meant. Files named on the command line keep their order instead.
    """
    folder = workspace.articles_dir
    files = sorted(folder.glob("*.md")) if folder.is_dir() else []
    articles = load_articles(files)
    chosen = filter_articles(articles, since=since, category=category, today=today)
    chosen.sort(key=lambda a: a.published, reverse=True)
    return chosen


def filter_articles(
    articles: Iterable[Article],
    *,
    since: dt.timedelta | None,
    category: str | None,
    today: dt.date,
) -> list[Article]:
    """``articles`` within ``since`` of ``today`` and of ``category``, in the order given."""
    chosen = list(articles)
    if since is not None:
        first_day = today - since
        chosen = [a for a in chosen if first_day <= a.published <= today]
    if category:
        chosen = [a for a in chosen if a.category == category]
    return chosen
