"""Approvals: an editor's go-ahead for one edition, pinned to the draft's content hash.

An approval counts only while the draft on disk still has the content hash it was
approved with: composing the edition again (any change to subject, HTML or text)
withdraws it, and every command that looks at approvals says so.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from digest_mail.config import Workspace
from digest_mail.errors import DigestMailError
from digest_mail.ledger.approvals import (
    Approval,
    get_approval,
    record_approval,
    withdraw_approval,
)
from digest_mail.ledger.db import Ledger, open_ledger
from digest_mail.render.mailed import draft_label

if TYPE_CHECKING:
    from digest_mail.render.draft import Draft

__all__ = [
    "ApprovalState",
    "approval_state",
    "approve",
    "withdraw",
]

Status = Literal["approved", "changed", "withdrawn", "missing", "none"]


@dataclass(frozen=True)
class ApprovalState:
    """Whether ``edition`` may be sent, judged against the draft on disk now.

    ``status``: approved (hash matches), changed (the draft was composed again after
    approval), withdrawn (``approve --withdraw``), missing (the draft folder is gone),
    none (never approved).
    """

    edition: str
    status: Status
    approval: Approval | None
    draft: Draft | None
    label: str
    edited: bool = False  # the draft's files no longer match its own edition.json

    @property
    def ok(self) -> bool:
        return self.status == "approved"

    def describe(self) -> str:
        """One line for people: what the state is and, when it blocks, what to do."""
        if self.status == "approved" and self.approval is not None:
            who = f" by {self.approval.approved_by}" if self.approval.approved_by else ""
            return f"{self.label} approved{who} at {self.approval.approved_at}"
        if self.status == "changed" and self.edited:
            return f"{self.label} was edited after compose; compose and approve it again"
        if self.status == "changed":
            return f"{self.label} changed after approval; approve it again"
        if self.status == "withdrawn":
            return f"{self.label}: approval withdrawn"
        if self.status == "missing":
            return (
                f"{self.label} was approved but its draft folder is gone;"
                " compose and approve it again"
            )
        return f"{self.label} is not approved"

    def describe_ja(self) -> str:
        """The same for the Japanese staff notice."""
        if self.status == "approved":
            return f"{self.label} は承認済みです。"
        if self.status == "changed" and self.edited:
            return f"{self.label} は作成後に書き換えられました。作成し直して承認してください。"
        if self.status == "changed":
            return f"{self.label} は承認後に変更されました。もう一度承認してください。"
        if self.status == "withdrawn":
            return f"{self.label} の承認は取り消されています。"
        if self.status == "missing":
            return f"{self.label} は承認されましたが、下書きフォルダがありません。"
        return f"{self.label} は承認されていません。"


def _judge(
    workspace: Workspace, approval: Approval | None, draft: Draft | None, edition: str
) -> ApprovalState:
    label = draft_label(workspace, draft, edition)
    edited = draft is not None and not _matches(draft, draft.content_hash)
    status: Status
    if approval is None:
        status = "none"
    elif approval.withdrawn_at is not None:
        status = "withdrawn"
    elif draft is None:
        status = "missing"
    elif not _matches(draft, approval.content_hash):
        status = "changed"
    else:
        status = "approved"
    return ApprovalState(
        edition=edition,
        status=status,
        approval=approval,
        draft=draft,
        label=label,
        edited=edited and status == "changed",
    )


def _matches(draft: Draft, pinned: str) -> bool:
    """The hash of the draft's files as they are now, not the one edition.json claims."""
    from digest_mail.render.draft import content_hash

    return content_hash(subject=draft.subject, html=draft.html, text=draft.text) == pinned


def approval_state(workspace: Workspace, ledger: Ledger, draft: Draft) -> ApprovalState:
    """The approval of ``draft`` as it is on disk now."""
    return _judge(workspace, get_approval(ledger, draft.id), draft, draft.id)


def stored_state(workspace: Workspace, ledger: Ledger, approval: Approval) -> ApprovalState:
    """Judge a stored approval against its draft folder (which may have gone)."""
    from digest_mail.render.draft import load_draft

    draft: Draft | None = None
    if (workspace.drafts_dir / approval.edition).is_dir():
        draft = load_draft(workspace, approval.edition)
    return _judge(workspace, approval, draft, approval.edition)


@dataclass(frozen=True)
class ApproveResult:
    """What ``approve`` did: ``previous`` is the state before (e.g. changed → approved)."""

    state: ApprovalState
    previous: ApprovalState


def approve(
    workspace: Workspace, ref: str, *, user: str | None = None, now: datetime | None = None
) -> ApproveResult:
    """Approve the draft ``ref`` as it is on disk now (its content hash is recorded)."""
    from digest_mail.render.draft import load_draft, verify_content

    draft = load_draft(workspace, ref)
    if not draft.content_hash:
        raise DigestMailError(
            f"{draft_label(workspace, draft, draft.id)}/edition.json has no content hash",
            hint=f"compose it again: digest-mail compose --edition {draft.id}",
        )
    # Approve what would go out: a hand-edited draft is refused, not pinned.
    verify_content(draft)
    who = user if user is not None else _current_user()
    when = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    with open_ledger(workspace) as ledger:
        with ledger.transaction():
            previous = approval_state(workspace, ledger, draft)
            if previous.ok:
                return ApproveResult(state=previous, previous=previous)
            record_approval(
                ledger, draft.id, content_hash=draft.content_hash, approved_at=when, approved_by=who
            )
        return ApproveResult(state=approval_state(workspace, ledger, draft), previous=previous)


def withdraw(workspace: Workspace, ref: str, *, now: datetime | None = None) -> ApprovalState:
    """Withdraw the approval of ``ref`` (an edition id or draft folder)."""
    edition = _edition_of(workspace, ref)
    when = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    with open_ledger(workspace) as ledger:
        with ledger.transaction():
            approval = get_approval(ledger, edition)
            label = draft_label(workspace, None, edition)
            if approval is None or approval.withdrawn_at is not None:
                raise DigestMailError(
                    f"{label} is not approved, so there is nothing to withdraw",
                    hint="see 'digest-mail schedule list' for what the schedules would send",
                )
            withdraw_approval(ledger, edition, at=when)
        approval = get_approval(ledger, edition)
        return _judge(workspace, approval, None, edition)


def _edition_of(workspace: Workspace, ref: str) -> str:
    """The edition id of ``ref``; works after the draft folder has been deleted too."""
    from digest_mail.content.edition import check_edition_id
    from digest_mail.render.draft import load_draft

    if "/" not in ref and not (workspace.drafts_dir / ref).is_dir() and not Path(ref).is_dir():
        return check_edition_id(ref, field="DRAFT")
    return load_draft(workspace, ref).id


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        # No login name in containers without a passwd entry: still record the approval.
        return ""
