"""The live preview's model: compose on demand, remember the last good render, show it
as a chosen reader gets it.

:class:`LiveSession` composes through :func:`digest_mail.render.compose.compose`, the function
``digest-mail compose`` calls, with the draft's own :class:`ComposeRequest` (the same
article files, window and overrides), rendering once per change. A failure keeps the
last good draft and records the lines ``compose`` would print (``Error: …``, ``Hint: …``).

What a reader sees is built by the send path itself: :class:`MessageTemplate` splices
the reader's name, address and unsubscribe link into the message bytes, and the stdlib
parser reads the parts back. The unsubscribe link is a test link (``make_token(test=True)``):
following it from a preview changes nothing. The HTTP side is :mod:`digest_mail.review.liveserver`.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from digest_mail.audience.csvfiles import scan_list
from digest_mail.audience.lists import existing_lists, require_list
from digest_mail.audience.rows import Recipient
from digest_mail.audience.unsubscribe import (
    make_token,
    signing_key,
    unsubscribe_mailto,
    unsubscribe_url,
)
from digest_mail.config import CONFIG_NAME, Workspace, find_workspace
from digest_mail.errors import DigestMailError
from digest_mail.mail.message import MessageTemplate
from digest_mail.mail.placeholders import SAMPLE_RECIPIENT
from digest_mail.render.compose import compose
from digest_mail.render.draft import ComposeRequest, Draft, resolve_draft
from digest_mail.render.plaintext import display_width, is_url_line
from digest_mail.review.check import GMAIL_CLIP_BYTES, TEXT_LINE_LIMIT, CheckReport, check_draft

__all__ = [
    "READERS_SHOWN",
    "Composed",
    "LiveSession",
    "Reader",
    "ReaderView",
    "error_lines",
    "frame_html",
    "watched_paths",
]

# The picker offers a list's first readers: a million-row list is read no further.
READERS_SHOWN = 50
MODES = ("light", "dark")
_DARK_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_LIGHT_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)


def error_lines(exc: DigestMailError) -> tuple[str, ...]:
    """What ``digest-mail`` prints for ``exc``: ``Error: …`` and the ``Hint: …`` line."""
    lines = f"Error: {exc.message}".split("\n")
    if exc.hint:
        lines.append(f"Hint: {exc.hint}")
    return tuple(lines)


def watched_paths(workspace: Workspace) -> tuple[Path, Path, Path]:
    """What a change of recomposes: articles/, templates/email/, digest-mail.toml."""
    return workspace.articles_dir, workspace.templates_dir, workspace.root / CONFIG_NAME


@dataclass(frozen=True)
class Reader:
    """Whom the placeholders are filled for: a row of a list, or the sample reader."""

    list_name: str
    email: str
    name: str
    sample: bool = False

    def label(self) -> str:
        return f"{self.name} <{self.email}>" if self.name else self.email


@dataclass(frozen=True)
class ReaderView:
    """The message one reader gets, read back from its bytes."""

    sender: str
    to: str
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class Composed:
    """One good render: the draft, the settings it was composed with, its check."""

    draft: Draft
    workspace: Workspace
    check: CheckReport
    serial: int
    seconds: float
    at: str
    spam_state: str = "absent"  # absent | pending | done | failed
    spam_error: str = ""
    # Each reader's message, built once per render (a reader picked again costs nothing).
    views: dict[Reader, ReaderView] = field(default_factory=dict, repr=False, compare=False)


def _text_lines(text: str) -> list[dict[str, Any]]:
    """The text part line by line, with the lines ``check`` would warn about marked."""
    return [
        {
            "text": line,
            "over": display_width(line) > TEXT_LINE_LIMIT
            and not is_url_line(line, width=TEXT_LINE_LIMIT),
        }
        for line in text.splitlines()
    ]


def frame_html(html: str, *, dark: bool) -> str:
    """The HTML part prepared for a preview frame.

    Links open in a new tab (the frame is sandboxed). ``dark`` makes the email's
    ``prefers-color-scheme: dark`` rules apply whatever the editor's system prefers, with
    a dark canvas, as a mail client in dark mode that honours them shows it (what
    ``preview --dark`` does with Chromium's --force-dark-mode).
    """
    extra = '<base target="_blank">'
    if dark:
        # An always-true and an always-false media feature in place of the preference.
        html = _DARK_QUERY.sub("(min-width: 0px)", html)
        html = _LIGHT_QUERY.sub("(max-width: -1px)", html)
        extra += '<meta name="color-scheme" content="dark"><style>:root{color-scheme:dark}</style>'
    found = _HEAD_END.search(html)
    if found is None:
        return extra + html
    return html[: found.start()] + extra + html[found.start() :]


class LiveSession:
    """The draft being edited: compose it again on demand, keep the last good render.

    ``compose_now`` runs in a worker thread (the server's event loop keeps serving);
    the lock makes concurrent calls run one after the other.
    """

    def __init__(
        self,
        workspace: Workspace,
        draft: str | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.root = workspace.root
        self._clock = clock
        # One compose at a time; the state swaps under a lock of their own, held briefly,
        # so that the event loop never waits for a compose.
        self._compose_lock = threading.Lock()
        self._lock = threading.Lock()
        self.version = 0
        self._renders = 0
        self._readers: dict[str, tuple[tuple[str, int, int], tuple[Reader, ...]]] = {}
        self.good: Composed | None = None
        self.error: tuple[str, ...] = ()
        self.workspace = workspace
        existing: Draft | None
        try:
            existing = resolve_draft(workspace, draft)
        except DigestMailError:
            if draft is not None:
                raise
            existing = None  # nothing composed yet: compose as 'digest-mail compose' would
        self.edition_id = existing.id if existing else None
        self.request = existing.request if existing else ComposeRequest()
        if existing is not None:
            self.good = self._composed(existing, workspace, seconds=0.0)

    def _composed(self, draft: Draft, workspace: Workspace, *, seconds: float) -> Composed:
        report = check_draft(draft, settings=workspace.settings)
        self._renders += 1
        return Composed(
            draft=draft,
            workspace=workspace,
            check=report,
            serial=self._renders,
            seconds=seconds,
            at=dt.datetime.now().strftime("%H:%M:%S"),
        )

    def compose_now(self) -> Composed | tuple[str, ...]:
        """Compose the draft again from the files as they are now: the new good render,
        or the error lines (the last good render stays)."""
        with self._compose_lock:
            started = self._clock()
            outcome: Composed | tuple[str, ...]
            try:
                workspace = find_workspace(self.root)
                request = self.request
                draft = compose(
                    workspace,
                    request.paths(workspace),
                    since=request.since,
                    category=request.category,
                    edition_id=self.edition_id,
                    subject=request.subject,
                    intro=request.intro,
                    preheader=request.preheader,
                )
                outcome = self._composed(draft, workspace, seconds=self._clock() - started)
            except DigestMailError as exc:
                outcome = error_lines(exc)
            except Exception as exc:  # a file gone mid-save, or a bug: the server stays up
                outcome = (f"Error: {type(exc).__name__}: {exc}",)
            with self._lock:
                self.version += 1
                if isinstance(outcome, Composed):
                    self.good, self.error, self.workspace = outcome, (), outcome.workspace
                    self.edition_id = outcome.draft.id
                else:
                    self.error = outcome
            return outcome

    def set_check(
        self, draft: Draft, report: CheckReport | None, *, state: str, error: str = ""
    ) -> bool:
        """Record the check with SpamAssassin's score (``state`` done or failed, or
        pending before it runs) for ``draft``, unless a newer render replaced it."""
        with self._lock:
            good = self.good
            if good is None or good.draft is not draft:
                return False
            self.good = replace(
                good, check=report or good.check, spam_state=state, spam_error=error
            )
            self.version += 1
            return True

    # --- readers ---------------------------------------------------------------------

    def lists(self) -> list[str]:
        return existing_lists(self.workspace)

    def default_list(self) -> str | None:
        names = self.lists()
        staff = self.workspace.settings.lists.staff
        return staff if staff in names else (names[0] if names else None)

    def readers(self, list_name: str | None) -> tuple[list[Reader], tuple[str, ...]]:
        """The first :data:`READERS_SHOWN` subscribed readers of the list (the staff list
        by default), or the sample reader when there is none; and why, if the list
        could not be read. Read again only when the file changed: the page asks on
        every update, and deciding a big list's encoding reads all of it."""
        workspace = self.workspace
        chosen = list_name or self.default_list()
        found: list[Reader] = []
        problem: tuple[str, ...] = ()
        if chosen is not None:
            try:
                path = require_list(workspace, chosen)
                stat = path.stat()
                key = (chosen, stat.st_mtime_ns, stat.st_size)
                cached = self._readers.get(chosen)
                if cached is not None and cached[0] == key:
                    found = list(cached[1])
                else:
                    for row in scan_list(path):
                        if isinstance(row, Recipient) and row.status == "subscribed":
                            found.append(Reader(chosen, row.email, row.name))
                            if len(found) >= READERS_SHOWN:
                                break
                    self._readers[chosen] = (key, tuple(found))
            except (DigestMailError, OSError) as exc:
                problem = (
                    error_lines(exc) if isinstance(exc, DigestMailError) else (f"Error: {exc}",)
                )
        if not found:
            address, name = SAMPLE_RECIPIENT
            found.append(
                Reader(chosen or workspace.settings.lists.staff, address, name, sample=True)
            )
        return found, problem

    def view(self, composed: Composed, reader: Reader) -> ReaderView:
        """The message ``reader`` gets of ``composed``, through the send path's builder."""
        cached = composed.views.get(reader)
        if cached is not None:
            return cached
        settings = composed.workspace.settings
        try:
            key = signing_key(composed.workspace)
        except DigestMailError:
            key = b"\0" * 32  # the link's shape is right; following it changes nothing
        token = make_token(key, reader.list_name, reader.email, test=True)
        template = MessageTemplate(composed.draft, settings=settings, list_name=reader.list_name)
        raw = template.render(
            to_address=reader.email,
            to_name=reader.name,
            unsubscribe_url=unsubscribe_url(settings, token),
            unsubscribe_mailto=unsubscribe_mailto(settings, token),
        )
        message = BytesParser(policy=policy.default).parsebytes(bytes(raw))
        assert isinstance(message, EmailMessage)
        html_part = message.get_body(("html",))
        text_part = message.get_body(("plain",))
        view = ReaderView(
            sender=str(message["From"]),
            to=str(message["To"]),
            subject=str(message["Subject"]),
            html=html_part.get_content() if isinstance(html_part, EmailMessage) else "",
            text=text_part.get_content() if isinstance(text_part, EmailMessage) else "",
        )
        composed.views[reader] = view
        return view

    def frame(self, list_name: str | None, row: int, *, dark: bool) -> str | None:
        """The last good render's HTML part for the chosen reader, for a preview frame."""
        composed = self.good
        if composed is None:
            return None
        readers, _ = self.readers(list_name)
        reader = readers[row] if 0 <= row < len(readers) else readers[0]
        return frame_html(self.view(composed, reader).html, dark=dark)

    # --- the page's state ------------------------------------------------------------

    def state(self, list_name: str | None, row: int) -> dict[str, Any]:
        """Everything the page shows, as JSON data."""
        composed = self.good
        lists = self.lists()
        chosen = list_name if list_name in lists else self.default_list()
        readers, problem = self.readers(chosen)
        row = row if 0 <= row < len(readers) else 0
        data: dict[str, Any] = {
            "version": self.version,
            "error": list(self.error),
            "reader_error": list(problem),
            "lists": lists,
            "list": chosen,
            "readers": [r.label() for r in readers],
            "row": row,
            "sample_reader": readers[row].sample,
            "draft": None,
        }
        if composed is None:
            return data
        draft = composed.draft
        view = self.view(composed, readers[row])
        report = composed.check
        data["draft"] = {
            "id": draft.id,
            "render": composed.serial,
            "path": str(draft.path.relative_to(self.root))
            if draft.path.is_relative_to(self.root)
            else str(draft.path),
            "composed_at": composed.at,
            "seconds": round(composed.seconds, 3),
            "articles": [a.get("title", "") for a in draft.articles],
            "sender": view.sender,
            "sender_name": parseaddr(view.sender)[0] or parseaddr(view.sender)[1],
            "to": view.to,
            "subject": view.subject,
            "preheader": draft.preheader,
            "text": _text_lines(view.text),
            "text_limit": TEXT_LINE_LIMIT,
            "check": {
                "ok": report.ok,
                "html_bytes": report.html_bytes,
                "clip_bytes": GMAIL_CLIP_BYTES,
                "measured_with": report.measured_with,
                "findings": [f.as_dict() for f in report.findings],
                "notes": list(report.notes),
            },
            "spam": {
                "state": composed.spam_state,
                "describe": "" if report.spam is None else report.spam.describe(),
                "score": None if report.spam is None else report.spam.score,
                "error": composed.spam_error,
            },
        }
        return data
