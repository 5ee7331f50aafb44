"""Which edition a schedule sends: the newest approved draft its lists have not received.

An approval counts only while the draft on disk is what was approved
(:mod:`digest_mail.schedule.approval`); a list never goes back in time, so an older
approved edition is not sent after a newer one went out. When nothing qualifies, the
choice says why, in English for the run-due line and in Japanese for the staff notice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from digest_mail.config import Workspace
from digest_mail.ledger.approvals import list_approvals
from digest_mail.ledger.campaigns import sent_editions
from digest_mail.ledger.db import Ledger
from digest_mail.schedule.approval import ApprovalState, stored_state
from digest_mail.schedule.slots import Schedule

if TYPE_CHECKING:
    from digest_mail.render.draft import Draft

__all__ = ["EditionChoice", "choose_edition"]


@dataclass(frozen=True)
class EditionChoice:
    """The edition a slot would send now, or why there is none."""

    draft: Draft | None
    reason: str
    blockers: tuple[str, ...] = ()
    reason_ja: str = ""

    @property
    def edition(self) -> str | None:
        return None if self.draft is None else self.draft.id


def _newness(state: ApprovalState) -> tuple[str, str]:
    created = state.draft.created_at if state.draft is not None else ""
    return (created, state.edition)


def choose_edition(workspace: Workspace, ledger: Ledger, schedule: Schedule) -> EditionChoice:
    """The newest approved draft not yet sent to this list (or the fixed edition).

    Older approved drafts are never sent instead of a newer one already sent: a list
    does not go back in time.
    """
    sent = sent_editions(ledger, schedule.list_names)
    approvals = [a for a in list_approvals(ledger) if a.withdrawn_at is None]
    if schedule.edition != "approved":
        approvals = [a for a in approvals if a.edition == schedule.edition]
    states = sorted(
        (stored_state(workspace, ledger, a) for a in approvals), key=_newness, reverse=True
    )
    blockers: list[str] = []
    blockers_ja: list[str] = []
    for state in states:
        if state.ok and state.draft is not None:
            if state.edition in sent:
                already = (
                    f"the newest approved edition {state.edition}"
                    f" was already sent to {schedule.list_name}"
                )
                return EditionChoice(
                    draft=None,
                    # A newer edition that lost its approval is what the editor must act
                    # on: say that first, not only that an older one went out.
                    reason="; ".join([*blockers, already]),
                    blockers=tuple(blockers),
                    reason_ja=" ".join(
                        [
                            f"最新の承認済みの号 {state.edition} は、"
                            f"すでにリスト {schedule.list_name} に送信済みです。",
                            *blockers_ja,
                        ]
                    ),
                )
            return EditionChoice(
                draft=state.draft, reason=state.describe(), blockers=tuple(blockers)
            )
        blockers.append(state.describe())
        blockers_ja.append(state.describe_ja())
    if schedule.edition != "approved":
        what, what_ja = (
            f"edition {schedule.edition} is not approved",
            f"号 {schedule.edition} は承認されていません。",
        )
    else:
        what, what_ja = "no approved edition", "承認済みの号がありません。"
    return EditionChoice(
        draft=None,
        reason="; ".join([what, *blockers]),
        blockers=tuple(blockers),
        reason_ja=" ".join([what_ja, *blockers_ja]),
    )
