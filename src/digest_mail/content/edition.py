"""The edition as content: its id, and the articles and words it is made of.

An :class:`Edition` is what one issue says before anything is rendered: its id, subject,
intro, preheader and articles. :func:`choose_articles` picks the articles (the files
named, or ``articles/`` within a window), :func:`build_edition` fills in the rest from
the options and the ``[edition]`` settings and refuses a subject that could not be
sent as written.

An edition id names folders (``drafts/<id>``, ``archive/<id>``) and campaigns; every id
read from outside is checked here against :data:`digest_mail.config.EDITION_ID`, the
one grammar of ids.
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from digest_mail.config import EDITION_ID, Settings, Workspace, parse_duration
from digest_mail.content.articles import (
    Article,
    filter_articles,
    load_articles,
    select_articles,
)
from digest_mail.errors import InputError
from digest_mail.files import display_path
from digest_mail.text import looks_like_encoded_word

__all__ = [
    "Edition",
    "build_edition",
    "check_edition_id",
    "choose_articles",
    "default_edition_id",
    "is_edition_id",
]


def default_edition_id(today: dt.date) -> str:
    """The ISO week of ``today``: 2026-11-25 → 2026-W48."""
    year, week, _ = today.isocalendar()
    return f"{year}-W{week:02d}"


def is_edition_id(value: object) -> bool:
    return isinstance(value, str) and EDITION_ID.fullmatch(value) is not None


def check_edition_id(
    edition_id: object, *, field: str = "--edition", path: Path | str | None = None
) -> str:
    """``edition_id`` if it is one, else an :class:`InputError` naming where it was read."""
    if not isinstance(edition_id, str) or not is_edition_id(edition_id):
        raise InputError(
            f"{edition_id!r} is not an edition id",
            path=path,
            field=field,
            hint="use letters, digits, '.', '_' and '-' only, e.g. 2026-W48",
        )
    return edition_id


@dataclass(frozen=True)
class Edition:
    """What one newsletter issue says, before rendering."""

    id: str
    subject: str
    intro: str
    preheader: str
    articles: tuple[Article, ...]

    def view_url(self, settings: Settings) -> str:
        """The per-edition view-in-browser address."""
        return f"{settings.archive.base_url.rstrip('/')}/{self.id}/"


def build_edition(
    articles: Sequence[Article],
    *,
    settings: Settings,
    today: dt.date,
    edition_id: str | None = None,
    subject: str | None = None,
    intro: str | None = None,
    preheader: str | None = None,
) -> Edition:
    """An :class:`Edition` from options, falling back to the ``[edition]`` settings."""
    if not articles:
        raise InputError("no articles to compose", hint="name article files or widen --since")
    ident = check_edition_id(edition_id or default_edition_id(today))
    template = settings.edition.subject if subject is None else subject
    try:
        # Only a bare {edition}: str.format would also run '{edition.__class__}' (attribute
        # access), '{edition.x}' (a traceback) or '{edition:>999999999}' (a huge string).
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
        if any(field != ("edition", "", None) for field in fields):
            raise ValueError(template)
        resolved_subject = template.format(edition=ident)
    except (KeyError, IndexError, ValueError):
        raise InputError(
            f"subject {template!r} may only use {{edition}}",
            field="--subject" if subject is not None else "edition.subject",
            hint="write literal braces as {{ and }}",
        ) from None
    resolved_subject = " ".join(resolved_subject.split())
    if looks_like_encoded_word(resolved_subject):
        # Python 3.10-3.12 decode such text in a header, CR LF included: refused here,
        # and encoded literally by digest_mail.mail.headers should it ever get further.
        raise InputError(
            f"subject {template!r} holds RFC 2047 encoded-word syntax (=?charset?q?…?=)",
            field="--subject" if subject is not None else "edition.subject",
            hint="write the subject as plain text: digest-mail encodes headers itself",
        )
    if not resolved_subject:
        raise InputError(
            "the subject is empty",
            field="--subject",
            hint="pass --subject or set [edition] subject",
        )
    return Edition(
        id=ident,
        subject=resolved_subject,
        intro=(settings.edition.intro if intro is None else intro).strip(),
        preheader=" ".join(
            (settings.edition.preheader if preheader is None else preheader).split()
        ),
        articles=tuple(articles),
    )


def choose_articles(
    workspace: Workspace,
    paths: Sequence[Path | str],
    *,
    since: str | None,
    category: str | None,
    today: dt.date,
) -> list[Article]:
    """The files named (in that order), else ``articles/`` within ``since`` (newest first)."""
    window = None if since is None else dt.timedelta(seconds=parse_duration(since, key="--since"))
    if paths:
        chosen = filter_articles(load_articles(paths), since=window, category=category, today=today)
    else:
        if window is None:
            window = dt.timedelta(
                seconds=parse_duration(workspace.settings.edition.since, key="edition.since")
            )
            since = workspace.settings.edition.since
        chosen = select_articles(workspace, since=window, category=category, today=today)
    if not chosen:
        what = []
        if since is not None:
            what.append(f"published in the last {since}")
        if category:
            what.append(f"in category {category!r}")
        where = "of the files named" if paths else f"in {display_path(workspace.articles_dir)}/"
        raise InputError(
            f"no articles selected: none {where} {' and '.join(what) or 'found'}",
            hint="name article files (compose articles/*.md) or widen --since, e.g. --since 30d",
        )
    return chosen
