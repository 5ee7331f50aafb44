"""What will hurt a draft in inboxes, found before anyone receives it.

Errors stop a send (``digest-mail check`` exits non-zero); warnings are worth a look.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

from digest_mail.config import Settings
from digest_mail.errors import DigestMailError
from digest_mail.mail.body import fold_html_lines
from digest_mail.mail.placeholders import PLACEHOLDERS, SAMPLE_RECIPIENT, fill, fill_values
from digest_mail.render.draft import Draft, sample_message
from digest_mail.render.plaintext import display_width, is_url_line
from digest_mail.render.renderer import TEXT_WIDTH
from digest_mail.review.probes import (
    NetworkUnreachableError,
    SpamReport,
    run_spamassassin,
    subject_all_caps,
)

__all__ = [
    "GMAIL_CLIP_BYTES",
    "TEXT_LINE_LIMIT",
    "CheckReport",
    "DraftCheckError",
    "FillValues",
    "Finding",
    "check_draft",
    "error_lines",
    "longest_values",
    "require_no_errors",
    "sent_html",
]

# Gmail hides everything after the first 102 KB of a message's HTML behind "[Message clipped]".
GMAIL_CLIP_BYTES = 102 * 1024
CLIP_WARNING_BYTES = 90 * 1024
TEXT_LINE_LIMIT = TEXT_WIDTH
_MAX_LISTED = 5

Level = Literal["error", "warning"]
_TOKEN = re.compile(r"@@[A-Za-z0-9_.-]*@@")
_MARKUP = re.compile(
    r"</?(?:a|p|div|span|br|table|td|img|h[1-6])\b[^>]*>|&(?:amp|lt|gt|quot|#\d+);"
)
_TEMPLATE_LEFTOVER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|<mj-[a-z-]+", re.DOTALL)


# What personalization may fill in when no list is named: a name of 100 kanji, an
# address of 254 octets (RFC 5321's limit) and that address's unsubscribe link.
NAME_BOUND = "漢" * 100
EMAIL_BOUND = ("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 61)[:254]


@dataclass(frozen=True)
class FillValues:
    """The longest values one recipient can bring: what the size is measured with."""

    name: str
    email: str
    unsubscribe_url: str
    origin: str  # "upper bounds" or "list NAME"


def longest_values(settings: Settings, *, list_path: Path | None = None) -> FillValues:
    """The list's longest name, address and unsubscribe link, or the documented bounds."""
    from digest_mail.audience.csvfiles import scan_list
    from digest_mail.audience.rows import Recipient
    from digest_mail.audience.unsubscribe import make_token, unsubscribe_url

    list_name = settings.lists.default if list_path is None else list_path.stem
    name, email, origin = NAME_BOUND, EMAIL_BOUND, "upper bounds"
    if list_path is not None:
        name, email, origin = "", "", f"list {list_path.stem}"
        for row in scan_list(list_path):
            if not isinstance(row, Recipient):
                continue
            if len(html.escape(row.name).encode()) > len(html.escape(name).encode()):
                name = row.name
            if len(row.email.encode()) > len(email.encode()):
                email = row.email
        name = name or settings.edition.greeting_fallback
    # A token's length depends on the list and address only, not on the key.
    token = make_token(b"\0" * 32, list_name, email)
    return FillValues(
        name=name,
        email=email,
        unsubscribe_url=unsubscribe_url(settings, token),
        origin=origin,
    )


def sent_html(page: str, settings: Settings, values: FillValues) -> str:
    """The HTML part as one recipient gets it: placeholders filled (escaped), lines folded."""
    _, markup = fill_values(
        settings=settings,
        to_address=values.email,
        to_name=values.name,
        unsubscribe_url=values.unsubscribe_url,
    )
    return fold_html_lines(fill(page, markup))


@dataclass(frozen=True)
class Finding:
    level: Level
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class CheckReport:
    draft_id: str
    draft_path: str
    html_bytes: int  # as sent: placeholders filled with the longest values
    text_lines: int
    findings: tuple[Finding, ...] = field(default_factory=tuple)
    measured_with: str = "upper bounds"
    spam: SpamReport | None = None
    notes: tuple[str, ...] = ()

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "draft": self.draft_id,
            "path": self.draft_path,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "html_bytes": self.html_bytes,
            "measured_with": self.measured_with,
            "text_lines": self.text_lines,
            "spamassassin": None
            if self.spam is None
            else {"score": self.spam.score, "rules": dict(self.spam.rules)},
            "findings": [f.as_dict() for f in self.findings],
            "notes": list(self.notes),
        }


class _Links(HTMLParser):
    """Collects links and images with their source line."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[int, str, str]] = []  # (line, tag.attr, url)
        self.images: list[tuple[int, str, str | None]] = []  # (line, src, alt)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        line = self.getpos()[0]
        if tag in ("a", "area") and "href" in values:
            self.links.append((line, f"{tag} href", (values["href"] or "").strip()))
        if tag == "img":
            src = (values.get("src") or "").strip()
            self.images.append((line, src, values.get("alt")))
            self.links.append((line, "img src", src))

    handle_startendtag = handle_starttag


def _bad_url(url: str) -> str | None:
    """Why ``url`` will not work from a mail client, or None when it will."""
    if url.startswith(("https://", "mailto:")) or url in PLACEHOLDERS.values():
        return None
    if url.startswith("http://"):
        return "uses http (use https)"
    if not url:
        return "is empty"
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", url):
        return "uses a scheme mail clients do not open (use https or mailto)"
    return "is relative (mail has no base address; use an absolute https URL)"


def _check_identity(settings: Settings, add: Callable[[Level, str, str], None]) -> None:
    """The sample identity of ``init`` is fine for capture and dev-smtp; through a real
    relay it is an error (send refuses it too)."""
    from digest_mail.delivery.identity import real_relays, sample_identity

    samples = sample_identity(settings)
    if not samples:
        return
    keys = ", ".join(s.key for s in samples)
    relays = real_relays(settings)
    if relays:
        add(
            "error",
            "identity",
            f"{keys} still on a reserved example domain, and [smtp] url sends through "
            f"{relays[0]}: set them to your own domain (send refuses until then)",
        )
    else:
        add(
            "warning",
            "identity",
            f"{keys} still on a reserved example domain: set them to your own domain "
            "before configuring a real relay",
        )


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."


def _field_group(name: str) -> str:
    """points[2] -> points, sources[0].points[1] -> sources[0].points: one line per list."""
    return re.sub(r"\[\d+\]$", "", name)


def _check_cards(draft: Draft, settings: Settings, add: Callable[[Level, str, str], None]) -> None:
    for card in draft.cards:
        where = str(card.get("path", "?"))
        if not card.get("lead") and not card.get("points"):
            add(
                "warning",
                "card",
                f"{where}: the card has neither a lead nor 💡 points, only its title "
                "(add 'lead:' or 'points:' to the front matter)",
            )
        unshown = list(dict.fromkeys(_field_group(str(n)) for n in card.get("unshown", [])))
        if unshown:
            why = ""
            if settings.edition.sources != "cards" and any(
                n.startswith("sources") for n in unshown
            ):
                why = f' ([edition] sources = "{settings.edition.sources}")'
            add(
                "warning",
                "unshown",
                f"{where}: the templates do not show {', '.join(unshown)}{why}",
            )


def _check_images(
    images: list[str],
    fetch: Callable[[str], str | None],
    add: Callable[[Level, str, str], None],
    notes: list[str],
) -> None:
    for url in images:
        try:
            problem = fetch(url)
        except NetworkUnreachableError as exc:
            notes.append(f"image URLs not checked: the network is unreachable ({exc})")
            return
        if problem:
            add("warning", "image-load", f"image {_short(url)} does not load: {problem}")


def check_draft(
    draft: Draft,
    *,
    settings: Settings | None = None,
    fill: FillValues | None = None,
    fetch: Callable[[str], str | None] | None = None,
    spamassassin: str | None = None,
) -> CheckReport:
    """Check the draft's HTML and text parts; see :class:`CheckReport`.

    The size is measured as sent, with ``fill`` (default: :func:`longest_values`'s
    upper bounds). ``fetch`` (e.g. :func:`digest_mail.review.probes.fetch_image`) checks each
    image URL; ``spamassassin`` is the executable that scores the message offline.
    """
    # The identity is checked when the caller says which settings mail goes out with.
    identity = settings is not None
    settings = settings or Settings()
    fill = fill or longest_values(settings)
    findings: list[Finding] = []
    notes: list[str] = []

    def add(level: Level, code: str, message: str) -> None:
        findings.append(Finding(level, code, message))

    page, text = draft.html, draft.text
    size = len(sent_html(page, settings, fill).encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        add(
            "error",
            "html-size",
            f"the HTML is {size / 1024:.1f} KB as sent: Gmail clips messages over 102 KB "
            '(fewer articles, shorter leads or fewer points; [edition] sources = "links")',
        )
    elif size > CLIP_WARNING_BYTES:
        add(
            "warning",
            "html-size",
            f"the HTML is {size / 1024:.1f} KB as sent, close to Gmail's 102 KB clip",
        )

    if not draft.subject.strip():
        add("error", "subject", "the subject is empty (compose --subject or [edition] subject)")
    elif subject_all_caps(draft.subject):
        add(
            "warning",
            "subject-caps",
            f"the subject {draft.subject!r} has only capital Latin letters: SpamAssassin's "
            "SUBJ_ALL_CAPS adds 0.5 (add a lower-case word, e.g. the newsletter's name)",
        )

    parser = _Links()
    parser.feed(page)
    parser.close()
    for line, src, alt in parser.images:
        if alt is None:
            add("error", "img-alt", f"index.html:{line}: image {_short(src)} has no alt text")
    bad_links = 0
    for line, where, url in parser.links:
        problem = _bad_url(url)
        if problem:
            bad_links += 1
            if bad_links <= _MAX_LISTED:
                add("error", "link", f"index.html:{line}: {where} {_short(url)!r} {problem}")
    if bad_links > _MAX_LISTED:
        add("error", "link", f"index.html: {bad_links - _MAX_LISTED} more bad links")

    unsubscribe = PLACEHOLDERS["unsubscribe_url"]
    for part, body in (("index.html", page), ("index.txt", text)):
        if unsubscribe not in body:
            add(
                "error",
                "unsubscribe",
                f"{part} has no unsubscribe link ({unsubscribe} placeholder)",
            )
        unknown = sorted({t for t in _TOKEN.findall(body) if t not in PLACEHOLDERS.values()})
        if unknown:
            add(
                "error",
                "placeholder",
                f"{part} has unknown placeholders: {', '.join(unknown)} "
                f"(known: {', '.join(PLACEHOLDERS.values())})",
            )
        leftovers = sorted({m.group()[:40] for m in _TEMPLATE_LEFTOVER.finditer(body)})
        if leftovers:
            add(
                "error",
                "leftover",
                f"{part} has unrendered template or MJML code: {', '.join(leftovers[:3])}",
            )

    if not text.strip():
        add("error", "text-empty", "index.txt is empty: spam filters punish HTML-only mail")
    else:
        long_lines = [
            (number, display_width(line))
            for number, line in enumerate(text.splitlines(), start=1)
            if display_width(line) > TEXT_LINE_LIMIT
            and not is_url_line(line, width=TEXT_LINE_LIMIT)
        ]
        for number, width in long_lines[:_MAX_LISTED]:
            add(
                "warning",
                "text-width",
                f"index.txt:{number}: line is {width} columns (limit {TEXT_LINE_LIMIT})",
            )
        if len(long_lines) > _MAX_LISTED:
            add(
                "warning",
                "text-width",
                f"index.txt: {len(long_lines) - _MAX_LISTED} more lines over "
                f"{TEXT_LINE_LIMIT} columns",
            )
        markup = sorted({m.group() for m in _MARKUP.finditer(text)})
        if markup:
            add(
                "warning",
                "text-markup",
                f"index.txt shows HTML markup to readers: {', '.join(markup[:3])} "
                "(text templates must not be autoescaped or hold tags)",
            )
        for article in draft.articles:
            url = article.get("url", "")
            if url and url not in text:
                add(
                    "warning",
                    "text-link",
                    f"index.txt has no link to {article.get('title', url)!r}",
                )

    if not draft.preheader.strip():
        add(
            "warning",
            "preheader",
            "no preheader: inboxes will show the first words of the body "
            "(compose --preheader or [edition] preheader)",
        )
    _check_cards(draft, settings, add)
    if fetch is not None:
        sources = [src for _, src, _ in parser.images if src.startswith(("https:", "http:"))]
        _check_images(list(dict.fromkeys(sources)), fetch, add, notes)
    spam = None
    if spamassassin is not None:
        spam = run_spamassassin(_message(draft, settings), executable=spamassassin)
        if spam.score > 0:
            add("warning", "spamassassin", f"SpamAssassin {spam.describe()}")
    if identity:
        _check_identity(settings, add)
    return CheckReport(
        draft_id=draft.id,
        draft_path=str(draft.path),
        html_bytes=size,
        text_lines=draft.text_lines,
        findings=tuple(findings),
        measured_with=fill.origin,
        spam=spam,
        notes=tuple(notes),
    )


def _message(draft: Draft, settings: Settings) -> bytes:
    """The message the sample reader of the default list gets, with links shaped as a
    real send's (preview.eml's name the staff list and a placeholder token), for
    SpamAssassin."""
    from digest_mail.audience.unsubscribe import make_token, unsubscribe_mailto, unsubscribe_url

    token = make_token(b"\0" * 32, settings.lists.default, SAMPLE_RECIPIENT[0])
    return sample_message(
        draft,
        settings,
        list_name=settings.lists.default,
        unsubscribe_url=unsubscribe_url(settings, token),
        unsubscribe_mailto=unsubscribe_mailto(settings, token),
    )


class DraftCheckError(DigestMailError):
    """A send of a draft that ``check`` reports errors for: nothing was sent."""

    def __init__(self, report: CheckReport, *, hint: str) -> None:
        count = len(report.errors)
        super().__init__(
            f"{report.draft_id} fails check with {count} error{'s' if count != 1 else ''};"
            " nothing was sent:\n" + "\n".join(error_lines(report)),
            hint=hint,
        )
        self.report = report


def error_lines(report: CheckReport) -> list[str]:
    """The check's errors as ``digest-mail check`` prints them."""
    return [f"  error: {f.code}: {f.message}" for f in report.errors]


def require_no_errors(
    draft: Draft, *, how_to_override: str = "", settings: Settings | None = None
) -> CheckReport:
    """The check of ``draft``; raise :class:`DraftCheckError` when it has errors.

    Every send runs this before its first message: a draft that would be clipped, has a
    broken link or no unsubscribe link must not reach a list by accident. (No SpamAssassin
    and no image fetch here: those only warn.)
    """
    report = check_draft(draft, settings=settings)
    if report.errors:
        hint = f"see 'digest-mail check {report.draft_id}', fix the articles or templates and"
        hint += f" compose it again{how_to_override}"
        raise DraftCheckError(report, hint=hint)
    return report
