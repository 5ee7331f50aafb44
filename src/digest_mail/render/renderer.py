"""Render an edition once: Jinja2 → MJML → HTML → inlined CSS, and its plain-text part.

Per-recipient values stay as tokens (``@@name@@``, from
:data:`digest_mail.mail.placeholders.PLACEHOLDERS`) in the output; delivery fills them
cheaply per recipient. The tokens have no braces or spaces because premailer rewrites
``href`` values and would mangle ``{{ … }}``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import functools
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
from mjml import mjml2html

from digest_mail.config import Settings
from digest_mail.content.articles import Article, excerpt
from digest_mail.content.edition import Edition
from digest_mail.errors import InputError
from digest_mail.files import display_path
from digest_mail.mail.placeholders import PLACEHOLDERS
from digest_mail.render.plaintext import wrap_text

__all__ = [
    "HTML_TEMPLATE",
    "TEXT_TEMPLATE",
    "RenderedEdition",
    "make_environment",
    "render_edition",
]

HTML_TEMPLATE = "digest.mjml.j2"
TEXT_TEMPLATE = "digest.txt.j2"
TEXT_WIDTH = 72

# premailer copies CSS widths into attributes and rewrites <img width>; Outlook needs ours.
_KEEP_ATTRIBUTES = ["width", "height", "align", "bgcolor", "valign", "background"]
_DOCTYPE = "<!doctype html>"


class _Slot(str):
    """A per-reader placeholder as the templates receive it: the only way a fill slot may
    enter a render. Any other ``@@…@@`` in the output came from article text."""


# Slots the templates wrote during the current render (a context variable: the Jinja
# environment is cached and shared).
_written: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar(
    "digest_mail_slots_written", default=None
)


def _finalize(value: Any) -> Any:
    if type(value) is _Slot:
        written = _written.get()
        if written is not None:
            written[str(value)] += 1
    return value


@dataclass(frozen=True)
class RenderedEdition:
    """The personalisable output of one render: placeholders still in place."""

    html: str
    text: str
    mjml: str


def japanese_date(value: dt.date) -> str:
    """2025-02-20 → 2025年2月20日"""
    return f"{value.year}年{value.month}月{value.day}日"


def slash_date(value: dt.date) -> str:
    """2019-07-26 → 2019/07/26 (the site's 公開日 format)."""
    return f"{value.year}/{value.month:02d}/{value.day:02d}"


def excerpt_paragraphs(body: str, limit: int) -> list[str]:
    """The body's excerpt (:func:`digest_mail.content.articles.excerpt`) as paragraphs."""
    text = excerpt(body, limit)
    return text.split("\n") if text else []


def _autoescape(name: str | None) -> bool:
    return name is not None and (".mjml" in name or ".html" in name)


def make_environment(templates_dir: Path | None) -> jinja2.Environment:
    """Workspace templates first (overrides), then the packaged defaults.

    Cached while the override folder's files stay the same: compiling the templates
    costs more than rendering them. An override added or removed since (which Jinja's
    own up-to-date check would miss) gives a new environment.
    """
    return _environment(templates_dir, _fingerprint(templates_dir))


def _fingerprint(templates_dir: Path | None) -> tuple[tuple[str, int], ...]:
    if templates_dir is None or not templates_dir.is_dir():
        return ()
    return tuple(
        sorted((str(p), p.stat().st_mtime_ns) for p in templates_dir.rglob("*") if p.is_file())
    )


@functools.lru_cache(maxsize=8)
def _environment(
    templates_dir: Path | None, fingerprint: tuple[tuple[str, int], ...]
) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if fingerprint and templates_dir is not None:
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.PackageLoader("digest_mail", "templates/email"))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
    )
    env.filters["jdate"] = japanese_date
    env.filters["sdate"] = slash_date
    env.filters["excerpt"] = excerpt_paragraphs
    env.filters["wrap"] = wrap_text
    return env


def _template_location(tb: TracebackType | None) -> tuple[str | None, int | None]:
    """The innermost template frame of a traceback Jinja rewrote to template lines."""
    found: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _render_template(
    env: jinja2.Environment, name: str, context: Mapping[str, Any]
) -> tuple[str, str]:
    """(output, the template file shown to the user: workspace override or packaged)."""
    hint = "fix the template, or delete the override in templates/email/ to use the default"
    try:
        template = env.get_template(name)
        shown = display_path(Path(template.filename)) if template.filename else name
        return template.render(context), shown
    except jinja2.TemplateSyntaxError as exc:
        where = display_path(Path(exc.filename)) if exc.filename else exc.name or name
        raise InputError(
            f"template syntax error: {exc.message}", path=where, line=exc.lineno, hint=hint
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise InputError(f"template {exc.name!r} not found", path=name, hint=hint) from None
    except (jinja2.UndefinedError, TypeError, ValueError, AttributeError) as exc:
        filename, line = _template_location(exc.__traceback__)
        if filename is None:
            raise
        raise InputError(
            f"template error: {exc}", path=display_path(Path(filename)), line=line, hint=hint
        ) from None


def mjml_to_html(source: str, *, template: str = HTML_TEMPLATE) -> str:
    """Compile MJML; refuse output that still holds MJML tags (unknown tags pass silently)."""
    try:
        html = mjml2html(source, disable_comments=True, fonts={})
    except ValueError as exc:
        raise InputError(
            f"MJML does not compile: {exc}",
            path=template,
            hint="check the tags the template writes",
        ) from None
    leftover = re.search(r"<mj-[a-z-]+", html)
    if leftover:
        raise InputError(
            f"MJML left {leftover.group()}> in the HTML (unknown or misplaced tag)",
            path=template,
            hint="use only MJML components mjml-python supports",
        )
    return html


# MJML's own reset block (``#outlook a``, ``table, td``, ``p``, ``img``): clients read it in
# <head>; inlined it repeated ~70 bytes on every table, td and p (a tenth of the part).
_MJML_RESET = re.compile(r'<style type="text/css">(?=\s*#outlook a\b)')


def inline_css(html: str) -> str:
    """premailer, configured so the doctype, media queries and img sizes survive.

    MJML's reset rules stay in <head> only (``data-premailer="ignore"``), as MJML itself
    leaves them; the template's own rules are inlined.
    """
    html = _MJML_RESET.sub('<style type="text/css" data-premailer="ignore">', html, count=1)
    # Imported here: premailer pulls in requests and cssutils (~0.7 s), which the commands
    # that load this module only to read drafts (check, archive, send) should not pay for.
    from premailer import Premailer

    inlined: str = Premailer(
        html,
        keep_style_tags=True,
        strip_important=False,
        disable_basic_attributes=_KEEP_ATTRIBUTES,
        allow_network=False,
        allow_loading_external_files=False,
        remove_classes=False,
        cssutils_logging_level=logging.CRITICAL,
        disable_validation=True,
    ).transform()
    if not inlined.lstrip().lower().startswith("<!doctype"):
        inlined = _DOCTYPE + "\n" + inlined
    return inlined


def template_context(edition: Edition, settings: Settings) -> dict[str, Any]:
    return {
        "edition": edition,
        "articles": edition.articles,
        "newsletter": settings.newsletter,
        "settings": settings,
        "edition_settings": settings.edition,
        "placeholders": {key: _Slot(token) for key, token in PLACEHOLDERS.items()},
        "view_url": edition.view_url(settings),
        "text_width": TEXT_WIDTH,
    }


def _slots(output: str) -> Counter[str]:
    return Counter({t: n for t in PLACEHOLDERS.values() if (n := output.count(t))})


def _where_placeholder(edition: Edition) -> str:
    """Which value the stray slot most likely came from, for the error."""
    for article in edition.articles:
        values: Iterator[object] = iter(vars(article).values())
        if any("@@" in str(v) for v in values):
            return f" (in {display_path(article.path)})"
    for name, value in (
        ("the intro", edition.intro),
        ("the preheader", edition.preheader),
        ("the subject", edition.subject),
    ):
        if "@@" in value:
            return f" (in {name})"
    return ""


def _render_counting_slots(
    env: jinja2.Environment, name: str, context: Mapping[str, Any]
) -> tuple[str, str, Counter[str]]:
    """:func:`_render_template`, and the fill slots the template itself wrote."""
    written: Counter[str] = Counter()
    reset = _written.set(written)
    try:
        output, shown = _render_template(env, name, context)
    finally:
        _written.reset(reset)
    return output, shown, written


def _refuse_foreign_slots(output: str, written: Counter[str], edition: Edition, part: str) -> None:
    """Every fill slot in ``output`` must be one a template wrote: delivery fills each one
    with the reader's address or unsubscribe link, so an article must never make one."""
    extra = _slots(output) - written
    if extra:
        token = sorted(extra)[0]
        raise InputError(
            f"the {part} part holds {token} that no template wrote: text or links of the"
            f" edition make a per-reader value{_where_placeholder(edition)}",
            hint="remove '@@' from it; per-reader values are filled only where the"
            " templates put them",
        )


class _Visible(HTMLParser):
    """The text a reader sees plus the link, image and alt values of an HTML part."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parts.extend(v for k, v in attrs if k in ("href", "src", "alt") and v)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def _squeeze(text: str) -> str:
    return "".join(text.split())


def article_fields(article: Article) -> list[tuple[str, list[str]]]:
    """(front-matter field, the spellings that show it) for each field with a value."""
    fields: list[tuple[str, list[str]]] = [
        ("title", [article.title]),
        ("url", [article.url]),
        ("published", [japanese_date(article.published), slash_date(article.published)]),
    ]
    for name in ("lead", "category", "image", "image_alt"):
        value = getattr(article, name)
        if value:
            fields.append((name, [value]))
    fields += [(f"points[{i}]", [p]) for i, p in enumerate(article.points)]
    for i, source in enumerate(article.sources):
        where = f"sources[{i}]"
        fields += [(f"{where}.title", [source.title]), (f"{where}.url", [source.url])]
        if source.published:
            dates = [japanese_date(source.published), slash_date(source.published)]
            fields.append((f"{where}.published", dates))
        if source.publisher:
            fields.append((f"{where}.publisher", [source.publisher]))
        fields += [(f"{where}.points[{j}]", [p]) for j, p in enumerate(source.points)]
    return fields


def unshown_fields(articles: Sequence[Article], *, html: str, text: str) -> list[list[str]]:
    """Per article, the front-matter fields whose value appears in neither part.

    Compared without whitespace, so the text part's wrapping does not hide a value.
    """
    visible = _Visible()
    visible.feed(html)
    visible.close()
    seen = _squeeze("\n".join(visible.parts)) + "\0" + _squeeze(text)
    return [
        [
            name
            for name, spellings in article_fields(article)
            if not any(_squeeze(spelling) in seen for spelling in spellings)
        ]
        for article in articles
    ]


def render_edition(
    edition: Edition,
    *,
    settings: Settings,
    templates_dir: Path | None,
    environment: Callable[[Path | None], jinja2.Environment] = make_environment,
) -> RenderedEdition:
    """Render ``edition`` once into HTML (inlined CSS) and text with placeholders kept."""
    env = environment(templates_dir)
    context = template_context(edition, settings)
    mjml, html_template, html_slots = _render_counting_slots(env, HTML_TEMPLATE, context)
    html = inline_css(mjml_to_html(mjml, template=html_template))
    _refuse_foreign_slots(html, html_slots, edition, "HTML")
    text, _, text_slots = _render_counting_slots(env, TEXT_TEMPLATE, context)
    text = re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
    _refuse_foreign_slots(text, text_slots, edition, "text")
    return RenderedEdition(html=html, text=text, mjml=mjml)
