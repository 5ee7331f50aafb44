"""What readers received of an edition, and the rails that follow from it.

The ledger's campaigns record the content hash of the draft they sent (a campaign under
way refuses a changed draft), so "what was mailed" is a fact, not a guess:

* ``compose`` refuses to replace a draft that was mailed or approved unless forced, and
  a forced replacement withdraws the approval and says so;
* ``archive`` publishes only the content that was mailed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from digest_mail.config import Workspace
from digest_mail.errors import DigestMailError
from digest_mail.ledger.approvals import Approval, list_approvals
from digest_mail.ledger.campaigns import Mailed, mailed_campaigns
from digest_mail.ledger.db import Ledger, ledger_exists, open_ledger

if TYPE_CHECKING:
    from digest_mail.render.draft import Draft

__all__ = [
    "Replacement",
    "check_archivable",
    "draft_label",
    "guard_replacement",
]


def draft_label(workspace: Workspace, draft: Draft | None, edition: str) -> str:
    """``drafts/2026-W48`` (relative to the workspace where possible)."""
    path = draft.path if draft is not None else workspace.drafts_dir / edition
    try:
        return Path(path).resolve().relative_to(workspace.root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _active_approval(ledger: Ledger, edition: str) -> Approval | None:
    for approval in list_approvals(ledger):
        if approval.edition == edition and approval.withdrawn_at is None:
            return approval
    return None


def _draft_hash(workspace: Workspace, edition: str) -> str | None:
    """The content hash of ``drafts/<edition>/`` as its files are now (None without one)."""
    from digest_mail.render.draft import content_hash, load_draft

    if not (workspace.drafts_dir / edition / "edition.json").is_file():
        return None
    try:
        draft = load_draft(workspace, edition)
    except DigestMailError:
        return None
    return content_hash(subject=draft.subject, html=draft.html, text=draft.text)


def _lists(mailed: list[Mailed]) -> str:
    return ", ".join(f"{m.list_name} ({m.sent} sent)" for m in mailed)


@dataclass(frozen=True)
class Replacement:
    """What replacing a draft with different content undid (``compose --force``)."""

    withdrawn: Approval | None = None
    mailed: tuple[Mailed, ...] = ()

    def notices(self, label: str) -> list[str]:
        lines = []
        if self.withdrawn is not None:
            who = f" by {self.withdrawn.approved_by}" if self.withdrawn.approved_by else ""
            lines.append(
                f"Withdrew the approval of {label} (approved{who} at"
                f" {self.withdrawn.approved_at}): approve the new version to schedule it."
            )
        if self.mailed:
            lines.append(
                f"Warning: {label} was already sent to {_lists(list(self.mailed))}; those"
                " readers keep the old version, and the archive keeps what was mailed."
            )
        return lines


def guard_replacement(
    workspace: Workspace, edition: str, new_hash: str, *, force: bool
) -> Replacement:
    """Refuse to replace a mailed or approved draft of ``edition`` with other content,
    unless ``force``; forced, the approval no longer counts (it pinned the old content).
    Same content: nothing to guard."""
    if not ledger_exists(workspace):
        return Replacement()
    label = draft_label(workspace, None, edition)
    with open_ledger(workspace) as ledger:
        mailed = [m for m in mailed_campaigns(ledger, edition) if m.content_hash != new_hash]
        approval = _active_approval(ledger, edition)
    # Only an approval of the draft on disk counts: once it was replaced (--force), the
    # approval pins content that is gone, and composing again withdraws nothing more.
    if approval is not None and approval.content_hash == new_hash:
        approval = None
    if approval is not None and approval.content_hash != _draft_hash(workspace, edition):
        approval = None
    if not mailed and approval is None:
        return Replacement()
    if not force:
        if mailed:
            raise DigestMailError(
                f"{label} was already sent to {_lists(mailed)}: composing it again would"
                " replace what readers received",
                hint=(
                    "compose the new content as a new edition (--edition), or add --force"
                    " to replace the draft anyway"
                ),
            )
        assert approval is not None
        raise DigestMailError(
            f"{label} is approved (by {approval.approved_by or 'someone'} at"
            f" {approval.approved_at}): composing it again would withdraw that approval",
            hint="add --force to replace it (then approve the new version), or compose"
            " another --edition",
        )
    # No withdrawn_at is written: the approval pins the old hash, so the new draft is
    # "changed after approval" everywhere (schedule list, run-due, send) until approved.
    return Replacement(withdrawn=approval, mailed=tuple(mailed))


def check_archivable(workspace: Workspace, draft: Draft) -> None:
    """The archive shows what readers received: refuse a draft never mailed, or one
    whose content differs from what its campaigns sent."""
    from digest_mail.render.draft import verify_content

    verify_content(draft)  # a hand edit of index.html would not show in edition.json
    label = draft_label(workspace, draft, draft.id)
    mailed: list[Mailed] = []
    if ledger_exists(workspace):
        with open_ledger(workspace) as ledger:
            mailed = mailed_campaigns(ledger, draft.id)
    if not mailed:
        raise DigestMailError(
            f"{label} was never sent to a list: the archive publishes only what readers received",
            hint=f"send it ('digest-mail send {draft.id} --list NAME'); send and run-due"
            " publish the archive when the campaign completes",
        )
    hashes = {m.content_hash for m in mailed}
    if draft.content_hash not in hashes:
        raise DigestMailError(
            f"{label} changed after it was sent to {_lists(mailed)}: the archive publishes"
            " only what readers received",
            hint="restore the draft that was sent, or send the new content as a new edition",
        )
