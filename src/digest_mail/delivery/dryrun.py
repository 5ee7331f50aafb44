"""Before a send: what it would do, changing nothing, and what the relay would refuse.

``send --dry-run``, the confirmation prompt and ``run-due --dry-run`` count as the
snapshot would (each address once, suppressed and invalid rows apart, readers another
campaign of the edition already has left out) without writing a row. The warnings name
what will fail for a gap of the configured relay rather than for the readers: today,
addresses with a non-ASCII local part and a relay that does not offer SMTPUTF8.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from digest_mail import eventloop
from digest_mail.audience.csvfiles import scan_list
from digest_mail.audience.keyset import SeenKeys
from digest_mail.audience.rows import Recipient, RowProblem
from digest_mail.config import Workspace
from digest_mail.delivery.report import (
    CampaignReport,
    DeliveryState,
    campaign_report,
    nobody_to_send,
)
from digest_mail.delivery.snapshot import Item
from digest_mail.errors import DigestMailError
from digest_mail.ledger import campaigns
from digest_mail.ledger.campaigns import AlreadyReceived
from digest_mail.ledger.db import Ledger
from digest_mail.transport.factory import open_transport
from digest_mail.transport.wire import needs_smtputf8

if TYPE_CHECKING:
    from digest_mail.render.draft import HashedDraft

_LEFT_TO_SEND = (
    DeliveryState.QUEUED,
    DeliveryState.DEFERRED,
    DeliveryState.SENDING,
    DeliveryState.UNCERTAIN,
)


def dry_run_report(
    ledger: Ledger,
    campaign_id: str,
    draft: HashedDraft,
    lists: Sequence[str],
    kind: str,
    items: Iterator[Item],
    *,
    existing: bool,
    label: str,
) -> CampaignReport:
    """What a send would do now, changing nothing; :class:`NothingToSend` as the send
    would raise it. Counts as the snapshot would: each address once, readers another
    campaign of the edition has left out."""
    if existing:
        report = campaign_report(ledger, campaign_id)
        report.dry_run = True
        report.transport = "dry run"
        for email in campaigns.delivery_emails(ledger, campaign_id, _LEFT_TO_SEND):
            count_smtputf8(report, email)
        return report
    report = CampaignReport(
        campaign_id=campaign_id,
        edition=draft.id,
        list_name=label,
        lists=tuple(lists) if len(lists) > 1 else (),
        kind=kind,
        dry_run=True,
    )
    received = AlreadyReceived(ledger, campaign_id, draft.id if kind == "campaign" else None)
    seen = SeenKeys() if len(lists) > 1 else None
    suppressed_emails: list[str] = []
    for item in items:
        if isinstance(item, RowProblem):
            report.skipped_invalid += 1
            continue
        key = item[0].key if isinstance(item, tuple) else item.key
        if seen is not None and seen.add(key, 0) is not None:
            continue
        if received(key):
            report.already_received += 1
        elif isinstance(item, tuple):
            report.total += 1
            report.suppressed += 1
            if len(suppressed_emails) < 3:
                suppressed_emails.append(item[0].email)
        else:
            report.total += 1
            report.queued += 1
            count_smtputf8(report, item.email)
    if report.queued == 0 and not report.already_received:
        raise nobody_to_send(
            lists=lists,
            kind=kind,
            total=report.total,
            suppressed=report.suppressed,
            invalid=report.skipped_invalid,
            suppressed_emails=suppressed_emails,
        )
    report.transport = "dry run"
    return report


def count_smtputf8(report: CampaignReport, email: str) -> None:
    if needs_smtputf8(email):
        report.needs_smtputf8 += 1
        if len(report.smtputf8_examples) < 3:
            report.smtputf8_examples.append(email)


def warn_before_sending(workspace: Workspace, report: CampaignReport) -> None:
    """Add to a dry run's ``warnings`` what will fail for a gap of the configured relay:
    recipients with a non-ASCII local part and a relay without SMTPUTF8."""
    warning = smtputf8_warning(workspace, report.needs_smtputf8, report.smtputf8_examples)
    if warning:
        report.warnings.append(warning)


def list_smtputf8_warning(workspace: Workspace, list_path: Path) -> str | None:
    """:func:`smtputf8_warning` for the subscribed readers of a list (for ``check``)."""
    if workspace.settings.smtp.url.strip() in {"", "capture"}:
        return None
    count = 0
    examples: list[str] = []
    for item in scan_list(list_path):
        if not isinstance(item, Recipient) or item.status != "subscribed":
            continue
        if needs_smtputf8(item.email):
            count += 1
            if len(examples) < 3:
                examples.append(item.email)
    return smtputf8_warning(workspace, count, examples)


def smtputf8_warning(workspace: Workspace, count: int, examples: Sequence[str]) -> str | None:
    """What to warn about ``count`` recipients with a non-ASCII local part when the
    configured relay does not offer SMTPUTF8; None when it does, or nobody needs it, or
    mail is captured. Asks the relay (one connection, one EHLO, nothing sent) only when
    such recipients exist."""
    if not count or workspace.settings.smtp.url.strip() in {"", "capture"}:
        return None
    transport = open_transport(workspace, concurrency=1)
    where = transport.description

    async def ask() -> bool:
        try:
            return await transport.offers("SMTPUTF8")
        finally:
            await transport.close()

    who = (
        f"{count} recipient{'s' if count != 1 else ''} with a non-ASCII local part "
        f"({', '.join(examples)}{', …' if count > len(examples) else ''})"
    )
    try:
        offered = eventloop.run(ask())
    except DigestMailError as exc:
        return f"{who} need SMTPUTF8; could not ask {where}: {exc.message}"
    if offered:
        return None
    return (
        f"{who} will fail: {where} does not offer SMTPUTF8 (they are not suppressed; "
        "send them through a relay that offers it)"
    )
