"""Compose: the week's articles to a draft on disk, rendered once.

:func:`compose` is the render stage's entry point, for ``digest-mail compose``, the live
preview and the scheduler alike: choose the articles
(:func:`~digest_mail.content.edition.choose_articles`), build the edition, render it
(:func:`~digest_mail.render.renderer.render_edition`), refuse to replace a draft that
was mailed or approved (:func:`~digest_mail.render.mailed.guard_replacement`) and save it
(:func:`~digest_mail.render.draft.save_draft`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from digest_mail.config import Workspace
from digest_mail.content.edition import build_edition, choose_articles
from digest_mail.render.draft import ComposeRequest, Draft, content_hash, save_draft
from digest_mail.render.mailed import Replacement, guard_replacement
from digest_mail.render.renderer import render_edition

__all__ = ["compose", "compose_edition"]


def compose(
    workspace: Workspace,
    paths: Sequence[Path | str] = (),
    *,
    since: str | None = None,
    category: str | None = None,
    edition_id: str | None = None,
    subject: str | None = None,
    intro: str | None = None,
    preheader: str | None = None,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
    force: bool = False,
) -> Draft:
    """Choose articles, build the edition, render it once and save the draft."""
    return compose_edition(
        workspace,
        paths,
        since=since,
        category=category,
        edition_id=edition_id,
        subject=subject,
        intro=intro,
        preheader=preheader,
        today=today,
        now=now,
        force=force,
    )[0]


def compose_edition(
    workspace: Workspace,
    paths: Sequence[Path | str] = (),
    *,
    since: str | None = None,
    category: str | None = None,
    edition_id: str | None = None,
    subject: str | None = None,
    intro: str | None = None,
    preheader: str | None = None,
    today: dt.date | None = None,
    now: dt.datetime | None = None,
    force: bool = False,
) -> tuple[Draft, Replacement]:
    """:func:`compose`, and what replacing the edition's earlier draft undid.

    A draft that was sent or approved is replaced by different content only with
    ``force`` (which withdraws the approval): see
    :func:`digest_mail.render.mailed.guard_replacement`.
    """
    today = today or dt.date.today()
    articles = choose_articles(workspace, paths, since=since, category=category, today=today)
    edition = build_edition(
        articles,
        settings=workspace.settings,
        today=today,
        edition_id=edition_id,
        subject=subject,
        intro=intro,
        preheader=preheader,
    )
    rendered = render_edition(
        edition, settings=workspace.settings, templates_dir=workspace.templates_dir
    )
    digest = content_hash(subject=edition.subject, html=rendered.html, text=rendered.text)
    replaced = guard_replacement(workspace, edition.id, digest, force=force)
    request = ComposeRequest.of(
        workspace,
        paths,
        since=since,
        category=category,
        subject=subject,
        intro=intro,
        preheader=preheader,
    )
    return save_draft(workspace, edition, rendered, now=now, request=request), replaced
