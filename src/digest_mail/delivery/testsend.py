"""Test sends: the edition to staff before it goes to readers, subject marked [TEST].

A test send goes to the staff list (``[lists] staff``) or to addresses given with
``--to``, never to a subscriber list: a list name other than staff's is refused, with a
hint that says how to send to it for real. Each test send is a campaign of its own
(kind ``test``, id ``EDITION/test/STAMP``), so tests may repeat; its links carry test
tokens, and other campaigns of the edition never count its readers as served.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from digest_mail.audience.addresses import normalize_address
from digest_mail.audience.lists import require_list, similar_list
from digest_mail.audience.rows import Recipient
from digest_mail.config import Workspace
from digest_mail.delivery.campaign import is_list, send_campaign
from digest_mail.delivery.report import CampaignError, CampaignReport
from digest_mail.delivery.snapshot import Item, list_items
from digest_mail.errors import DigestMailError
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.suppressions import is_suppressed
from digest_mail.transport.protocol import Transport
from digest_mail.transport.ratelimit import Clock

if TYPE_CHECKING:
    from digest_mail.render.draft import HashedDraft


def send_test(
    workspace: Workspace,
    draft: HashedDraft,
    *,
    to: Sequence[str] | None = None,
    clock: Clock | None = None,
    transport: Transport | None = None,
) -> CampaignReport:
    """A test send: the staff list, or explicit addresses; subject ``[TEST] …``.

    Never a subscriber list: a list name other than ``[lists] staff`` is refused.
    Every test send is its own campaign (kind ``test``), so tests may repeat.
    """
    staff = workspace.settings.lists.staff
    lists = [t for t in (to or [staff]) if "@" not in t]
    addresses = [t for t in (to or []) if "@" in t]
    for name in lists:
        if name == staff:
            continue
        if is_list(workspace, name):
            hint = f"use 'digest-mail send {draft.id} --list {name}' to send to a subscriber list"
        elif similar_list(name, [staff]):
            hint = f"Did you mean {staff!r}?"
        else:
            # A misspelt name is never offered to 'send': name what --to takes.
            hint = f"give --to {staff} or an address (there is no list {name!r})"
        raise CampaignError(
            f"test-send only goes to the staff list {staff!r}, not {name!r}", hint=hint
        )
    checked = []
    for address in addresses:
        try:
            email, key = normalize_address(address)
        except DigestMailError as exc:
            raise CampaignError(f"--to {address!r}: {exc.message}") from None
        checked.append(
            Recipient(email=email, key=key, name="", status="subscribed", attrs={}, line=0)
        )
    if lists:
        require_list(workspace, staff)  # a misspelt [lists] staff gets 'Did you mean'
    label = staff if lists else "addresses"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    campaign_id = f"{draft.id}/test/{stamp}"

    def items(ledger: Ledger) -> Iterator[Item]:
        if lists:
            yield from list_items(workspace, staff, ledger)
        for recipient in checked:
            yield (recipient, "suppressed") if is_suppressed(ledger, recipient.key) else recipient

    return send_campaign(
        workspace,
        draft,
        label,
        campaign_id=campaign_id,
        kind="test",
        items=items,
        subject_prefix="[TEST] ",
        concurrency=1,  # a few staff addresses: one connection is enough
        rate=None,
        resend_uncertain=False,
        progress=None,
        clock=clock,
        transport=transport,
    )
