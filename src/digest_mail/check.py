"""What will hurt a draft in inboxes, found before anyone receives it.

Errors stop a send (``digest-mail check`` exits non-zero); warnings are worth a look.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Literal

from digest_mail.edition import Draft
from digest_mail.errors import DigestMailError
from digest_mail.plaintext import display_width, is_url_line
from digest_mail.render import PLACEHOLDERS

__all__ = [
    "GMAIL_CLIP_BYTES",
    "TEXT_LINE_LIMIT",
    "CheckReport",
    "DraftCheckError",
    "Finding",
    "check_draft",
    "error_lines",
    "require_no_errors",
]

# Gmail hides everything after the first 102 KB of a message's HTML behind "[Message clipped]".
GMAIL_CLIP_BYTES = 102 * 1024
CLIP_WARNING_BYTES = 90 * 1024
TEXT_LINE_LIMIT = 78
_MAX_LISTED = 5

Level = Literal["error", "warning"]
_TOKEN = re.compile(r"@@[A-Za-z0-9_.-]*@@")
_MARKUP = re.compile(
    r"</?(?:a|p|div|span|br|table|td|img|h[1-6])\b[^>]*>|&(?:amp|lt|gt|quot|#\d+);"
)
_TEMPLATE_LEFTOVER = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|<mj-[a-z-]+", re.DOTALL)


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
    html_bytes: int
    text_lines: int
    findings: tuple[Finding, ...] = field(default_factory=tuple)

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
            "text_lines": self.text_lines,
            "findings": [f.as_dict() for f in self.findings],
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


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."


def check_draft(draft: Draft) -> CheckReport:
    """Check the draft's HTML and text parts; see :class:`CheckReport`."""
    findings: list[Finding] = []

    def add(level: Level, code: str, message: str) -> None:
        findings.append(Finding(level, code, message))

    html, text = draft.html, draft.text
    size = draft.html_bytes
    if size > GMAIL_CLIP_BYTES:
        add(
            "error",
            "html-size",
            f"index.html is {size / 1024:.1f} KB: Gmail clips messages over 102 KB "
            "(fewer articles, shorter leads or fewer points)",
        )
    elif size > CLIP_WARNING_BYTES:
        add(
            "warning",
            "html-size",
            f"index.html is {size / 1024:.1f} KB, close to Gmail's 102 KB clip",
        )

    if not draft.subject.strip():
        add("error", "subject", "the subject is empty (compose --subject or [edition] subject)")

    parser = _Links()
    parser.feed(html)
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
    for part, body in (("index.html", html), ("index.txt", text)):
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
    return CheckReport(
        draft_id=draft.id,
        draft_path=str(draft.path),
        html_bytes=size,
        text_lines=draft.text_lines,
        findings=tuple(findings),
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


def require_no_errors(draft: Draft, *, how_to_override: str = "") -> CheckReport:
    """The check of ``draft``; raise :class:`DraftCheckError` when it has errors.

    Every send runs this before its first message: a draft that would be clipped, has a
    broken link or no unsubscribe link must not reach a list by accident.
    """
    report = check_draft(draft)
    if report.errors:
        hint = f"see 'digest-mail check {report.draft_id}', fix the articles or templates and"
        hint += f" compose it again{how_to_override}"
        raise DraftCheckError(report, hint=hint)
    return report
