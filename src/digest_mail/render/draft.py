"""Drafts: an edition rendered once, on disk as ``drafts/<edition>/``, written atomically.

A draft folder holds ``index.html``, ``index.txt``, ``index.mjml``, ``edition.json`` and
``preview.eml``. It is built in a hidden temporary folder beside its final place and
renamed into place only when every file is written, so a failed compose never leaves a
partial draft that looks complete; composing the same edition again replaces the folder.

``edition.json`` pins the content hash of the subject and both parts: an approval pins
it too, and :func:`verify_content` refuses a draft whose files were edited since.
:func:`digest_mail.render.compose.compose` is what writes drafts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from digest_mail.config import Settings, Workspace
from digest_mail.content.articles import Article
from digest_mail.content.edition import Edition, check_edition_id, is_edition_id
from digest_mail.errors import DigestMailError
from digest_mail.files import display_path, new_temp_dir
from digest_mail.mail.message import DraftLike
from digest_mail.mail.placeholders import SAMPLE_RECIPIENT, sample_unsubscribe_url
from digest_mail.render.renderer import RenderedEdition, unshown_fields

__all__ = [
    "ComposeRequest",
    "Draft",
    "DraftChangedError",
    "HashedDraft",
    "content_hash",
    "latest_draft",
    "load_draft",
    "resolve_draft",
    "sample_message",
    "save_draft",
    "verify_content",
]

DRAFT_FILES = ("index.html", "index.txt", "index.mjml", "edition.json", "preview.eml")


class DraftChangedError(DigestMailError):
    """A draft's files no longer hold the content its edition.json (and any approval) pins."""


class HashedDraft(DraftLike, Protocol):
    """What :func:`verify_content` reads: the strings messages are built from, and the pin."""

    @property
    def content_hash(self) -> str: ...


def verify_content(draft: HashedDraft) -> None:
    """Refuse a draft whose subject, HTML or text is not what its content hash says.

    The hash is recomputed from the very strings a send builds messages from, so a hand
    edit of ``index.html`` after ``approve`` can never go out under that approval.
    """
    actual = content_hash(subject=draft.subject, html=draft.html, text=draft.text)
    if actual == draft.content_hash:
        return
    folder = getattr(draft, "path", None)
    label = display_path(folder) if isinstance(folder, Path) else f"draft {draft.id}"
    raise DraftChangedError(
        f"{label} was changed after compose: its subject, index.html or index.txt"
        " no longer match the content hash in its edition.json",
        hint=f"compose it again (digest-mail compose --edition {draft.id}), check it"
        " and approve it again",
    )


def content_hash(*, subject: str, html: str, text: str) -> str:
    """sha256 of what a recipient gets: approval pins this, so any later edit shows."""
    digest = hashlib.sha256()
    for part in (subject, html, text):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class ComposeRequest:
    """What ``compose`` was asked for, kept in edition.json (``"compose"``) so that the
    draft can be composed again the same way: ``preview --serve`` recomposes on every
    save with the same article files, window and overrides. The edition id is the
    draft's own. Article paths inside the workspace are kept relative to it."""

    articles: tuple[str, ...] = ()
    since: str | None = None
    category: str | None = None
    subject: str | None = None
    intro: str | None = None
    preheader: str | None = None

    @classmethod
    def of(
        cls, workspace: Workspace, paths: Sequence[Path | str], **options: str | None
    ) -> ComposeRequest:
        root = workspace.root.resolve()
        kept = []
        for given in paths:
            path = Path(given).absolute()
            kept.append(
                path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
            )
        return cls(articles=tuple(kept), **options)

    @classmethod
    def from_json(cls, data: object) -> ComposeRequest:
        """The record of an edition.json; anything malformed reads as "no options"."""
        if not isinstance(data, dict):
            return cls()
        articles = data.get("articles")
        options = {
            key: value
            for key in ("since", "category", "subject", "intro", "preheader")
            if isinstance(value := data.get(key), str)
        }
        if not isinstance(articles, list) or not all(isinstance(a, str) for a in articles):
            articles = []
        return cls(articles=tuple(articles), **options)

    def as_json(self) -> dict[str, Any]:
        return {
            "articles": list(self.articles),
            "since": self.since,
            "category": self.category,
            "subject": self.subject,
            "intro": self.intro,
            "preheader": self.preheader,
        }

    def paths(self, workspace: Workspace) -> list[Path]:
        return [workspace.root / article for article in self.articles]


@dataclass(frozen=True)
class Draft:
    """A composed edition on disk (``drafts/<id>/``), placeholders still in place."""

    id: str
    path: Path
    subject: str
    preheader: str
    html: str
    text: str
    content_hash: str
    articles: tuple[dict[str, str], ...]
    created_at: str
    intro: str = ""
    mjml: str = field(default="", repr=False)
    # Per article, what check needs of its front matter: file, lead, 💡 points, image,
    # the fields no template showed (see render.unshown_fields).
    cards: tuple[dict[str, Any], ...] = ()
    request: ComposeRequest = ComposeRequest()

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def text_lines(self) -> int:
        return len(self.text.splitlines())


def _article_summary(article: Article) -> dict[str, str]:
    return {
        "title": article.title,
        "url": article.url,
        "published": article.published.isoformat(),
        "category": article.category,
        "slug": article.slug,
    }


def _card(article: Article, unshown: list[str]) -> dict[str, Any]:
    return {
        "path": display_path(article.path),
        "lead": bool(article.lead),
        "points": len(article.points),
        "image": article.image or "",
        "unshown": unshown,
    }


def _write(path: Path, data: str | bytes) -> None:
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with open(path, "wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def sample_message(
    draft: DraftLike,
    settings: Settings,
    *,
    list_name: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
) -> bytes:
    """The message :data:`SAMPLE_RECIPIENT` gets through ``list_name`` with these links."""
    from digest_mail.mail.message import POLICY, build_message

    address, name = SAMPLE_RECIPIENT
    message = build_message(
        draft,
        settings=settings,
        to_address=address,
        to_name=name,
        list_name=list_name,
        unsubscribe_url=unsubscribe_url,
        unsubscribe_mailto=unsubscribe_mailto,
    )
    return message.as_bytes(policy=POLICY)


def _preview_message(draft: Draft, settings: Settings) -> bytes:
    return sample_message(
        draft,
        settings,
        list_name=settings.lists.staff,
        unsubscribe_url=sample_unsubscribe_url(settings),
        unsubscribe_mailto=f"mailto:{settings.unsubscribe.mailto}?subject=unsubscribe-preview",
    )


def save_draft(
    workspace: Workspace,
    edition: Edition,
    rendered: RenderedEdition,
    *,
    now: dt.datetime | None = None,
    request: ComposeRequest | None = None,
) -> Draft:
    """Write ``drafts/<id>/`` atomically (temp folder beside it, then rename)."""
    drafts = workspace.drafts_dir
    drafts.mkdir(parents=True, exist_ok=True)
    created = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0).isoformat()
    target = drafts / edition.id
    draft = Draft(
        id=edition.id,
        path=target,
        subject=edition.subject,
        preheader=edition.preheader,
        html=rendered.html,
        text=rendered.text,
        content_hash=content_hash(subject=edition.subject, html=rendered.html, text=rendered.text),
        articles=tuple(_article_summary(a) for a in edition.articles),
        created_at=created,
        intro=edition.intro,
        mjml=rendered.mjml,
        request=request or ComposeRequest(),
        cards=tuple(
            _card(article, unshown)
            for article, unshown in zip(
                edition.articles,
                unshown_fields(edition.articles, html=rendered.html, text=rendered.text),
                strict=True,
            )
        ),
    )
    meta: dict[str, Any] = {
        "id": draft.id,
        "subject": draft.subject,
        "preheader": draft.preheader,
        "intro": draft.intro,
        "content_hash": draft.content_hash,
        "created_at": draft.created_at,
        "articles": list(draft.articles),
        "cards": list(draft.cards),
        "html_bytes": draft.html_bytes,
        "text_lines": draft.text_lines,
        "compose": draft.request.as_json(),
    }
    staging = new_temp_dir(drafts, prefix=f".{edition.id}.")
    try:
        _write(staging / "index.html", draft.html)
        _write(staging / "index.txt", draft.text)
        _write(staging / "index.mjml", draft.mjml)
        _write(staging / "preview.eml", _preview_message(draft, workspace.settings))
        # edition.json last: a folder without it is never taken for a draft.
        _write(staging / "edition.json", json.dumps(meta, ensure_ascii=False, indent=2) + "\n")
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{edition.id}.", suffix=".old", dir=drafts))
            os.rename(target, retired / edition.id)
            os.rename(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return draft


def _read_draft(path: Path) -> Draft:
    shown = display_path(path)
    meta_path = path / "edition.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        html = (path / "index.html").read_text(encoding="utf-8")
        text = (path / "index.txt").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DigestMailError(
            f"{shown} is not a complete draft ({Path(exc.filename or '').name} is missing)",
            hint=f"compose it again: digest-mail compose --edition {path.name}",
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DigestMailError(
            f"{shown}/edition.json is damaged: {exc}",
            hint=f"compose it again: digest-mail compose --edition {path.name}",
        ) from None
    if not isinstance(meta, dict):
        raise DigestMailError(f"{shown}/edition.json is damaged: not a JSON object")
    # The id becomes archive/<id>/ and a campaign id: a copied draft must not choose a path.
    ident = check_edition_id(meta.get("id", path.name), field="id", path=f"{shown}/edition.json")
    mjml_path = path / "index.mjml"
    return Draft(
        id=ident,
        path=path,
        subject=str(meta.get("subject", "")),
        preheader=str(meta.get("preheader", "")),
        html=html,
        text=text,
        content_hash=str(meta.get("content_hash", "")),
        articles=tuple(dict(a) for a in meta.get("articles", [])),
        created_at=str(meta.get("created_at", "")),
        intro=str(meta.get("intro", "")),
        cards=tuple(dict(c) for c in meta.get("cards", []) if isinstance(c, dict)),
        request=ComposeRequest.from_json(meta.get("compose")),
        mjml=mjml_path.read_text(encoding="utf-8") if mjml_path.is_file() else "",
    )


def load_draft(workspace: Workspace, ref: str) -> Draft:
    """A draft by edition id (``2026-W48``) or by the path of its folder."""
    candidate = Path(ref).expanduser()
    if ("/" in ref or os.sep in ref or ref in (".", "..")) or (
        candidate.is_dir() and (candidate / "edition.json").is_file()
    ):
        path = candidate if candidate.is_absolute() else Path.cwd() / candidate
        if not path.is_dir():
            raise DigestMailError(f"no draft folder {ref}", hint="run 'digest-mail compose' first")
        return _read_draft(path.resolve())
    if not is_edition_id(ref):
        raise DigestMailError(f"{ref!r} is neither an edition id nor a draft folder")
    path = workspace.drafts_dir / ref
    if not path.is_dir():
        known = sorted(p.name for p in _draft_folders(workspace))
        listing = f" (drafts: {', '.join(known)})" if known else ""
        raise DigestMailError(
            f"no draft {ref} in {display_path(workspace.drafts_dir)}/{listing}",
            hint=f"run 'digest-mail compose --edition {ref}' first",
        )
    return _read_draft(path)


def _draft_folders(workspace: Workspace) -> list[Path]:
    drafts = workspace.drafts_dir
    if not drafts.is_dir():
        return []
    return [
        p for p in drafts.iterdir() if not p.name.startswith(".") and (p / "edition.json").is_file()
    ]


def latest_draft(workspace: Workspace) -> Draft:
    """The most recently composed draft (for commands whose DRAFT is optional)."""
    folders = _draft_folders(workspace)
    if not folders:
        raise DigestMailError(
            f"no drafts in {display_path(workspace.drafts_dir)}/",
            hint="run 'digest-mail compose' first",
        )
    newest = max(folders, key=lambda p: ((p / "edition.json").stat().st_mtime_ns, p.name))
    return _read_draft(newest)


def resolve_draft(workspace: Workspace, ref: str | None) -> Draft:
    """``load_draft`` for a given ref, else :func:`latest_draft`."""
    return latest_draft(workspace) if ref is None else load_draft(workspace, ref)
