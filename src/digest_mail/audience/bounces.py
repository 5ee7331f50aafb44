"""Bounce import: delivery status notifications (RFC 3464) into ledger suppressions.

The bounce mailbox is read by :mod:`digest_mail.audience.bouncemail`; this module
decides what each report does to the ledger. A permanent failure (Action: failed,
Status 5.x.x) suppresses the address at once; a soft bounce (Action: failed, Status
4.x.x: the relay gave up after retrying) is recorded once per message we sent (its
Message-ID), and the third within 30 days suppresses it, whatever order the reports
arrive in. A delay warning (Action: delayed) is counted but is no bounce: the message
is still being retried. An abuse report (RFC 5965 ARF) suppresses the complaining
address as ``complained``. Anything else in the mailbox is counted and left alone.
"""

from __future__ import annotations

import email.policy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from pathlib import Path
from typing import Literal

from digest_mail.audience.addresses import address_key
from digest_mail.audience.bouncemail import (
    RecipientStatus,
    mailbox_messages,
    raw_message_id,
    read_message,
)
from digest_mail.files import display_path
from digest_mail.ledger.campaigns import sent_message
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.suppressions import record_soft_bounce, soft_bounce_times, suppress

__all__ = [
    "SOFT_LIMIT",
    "SOFT_WINDOW",
    "BounceEvent",
    "BounceImport",
    "UnreadableMessage",
    "import_bounces",
]

SOFT_LIMIT = 3
SOFT_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class BounceEvent:
    """What the import did for one recipient of one report."""

    address: str
    kind: Literal["hard", "soft", "complaint", "delay"]
    status: str
    detail: str
    outcome: Literal[
        "suppressed", "already-suppressed", "recorded", "seen-before", "unmatched", "noted"
    ]
    soft_count: int = 0

    def __str__(self) -> str:
        if self.kind == "hard":
            what = f"hard bounce {self.status}"
        elif self.kind == "complaint":
            what = "spam complaint"
        elif self.kind == "delay":
            what = f"delay warning {self.status}"
        else:
            what = f"soft bounce {self.status} ({self.soft_count} in {SOFT_WINDOW.days} days)"
        outcome = {
            "suppressed": "suppressed",
            "already-suppressed": "already suppressed",
            "recorded": "recorded",
            "seen-before": "already imported",
            "unmatched": "ignored, not about a message this ledger sent",
            "noted": "still being retried, not a bounce",
        }[self.outcome]
        return f"{self.address}: {what}: {outcome}" + (f" — {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class UnreadableMessage:
    """A message of the mailbox the parser could not read; it was skipped."""

    position: str  # "message 3" in an mbox, the file name in a Maildir
    message_id: str
    reason: str

    def __str__(self) -> str:
        ident = f" {self.message_id}" if self.message_id else ""
        return f"unreadable: {self.position}{ident} skipped: {self.reason}"


@dataclass
class BounceImport:
    """Counts of a bounce import, and one event per bounced recipient."""

    source: str
    messages: int = 0
    reports: int = 0
    ignored: int = 0
    hard: int = 0
    soft: int = 0
    delayed: int = 0
    other: int = 0
    complaints: int = 0
    suppressed: int = 0
    unmatched: int = 0
    events: list[BounceEvent] = field(default_factory=list)
    unreadable: list[UnreadableMessage] = field(default_factory=list)

    def summary(self) -> str:
        skipped = (
            f"; {len(self.unreadable)} unreadable message"
            f"{'s' if len(self.unreadable) != 1 else ''} skipped"
            if self.unreadable
            else ""
        )
        return (
            f"{self.source}: {self.messages} messages, {self.reports} delivery reports, "
            f"{self.ignored} other messages ignored; {self.hard} hard bounces, "
            f"{self.soft} soft bounces, "
            + (f"{self.delayed} delay warnings, " if self.delayed else "")
            + f"{self.other} other statuses"
            + (f", {self.complaints} complaints" if self.complaints else "")
            + "; "
            f"{self.suppressed} addresses newly suppressed"
            + (
                f"; {self.unmatched} reports about mail this ledger did not send, ignored "
                "(--trust-unmatched to act on them)"
                if self.unmatched
                else ""
            )
            + skipped
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "messages": self.messages,
            "reports": self.reports,
            "ignored": self.ignored,
            "hard": self.hard,
            "soft": self.soft,
            "delayed": self.delayed,
            "other": self.other,
            "complaints": self.complaints,
            "suppressed": self.suppressed,
            "unmatched": self.unmatched,
            "unreadable": [
                {"position": u.position, "message_id": u.message_id, "reason": u.reason}
                for u in self.unreadable
            ],
            "events": [
                {
                    "address": e.address,
                    "kind": e.kind,
                    "status": e.status,
                    "detail": e.detail,
                    "outcome": e.outcome,
                    "soft_count": e.soft_count,
                }
                for e in self.events
            ],
        }


def import_bounces(
    path: Path,
    ledger: Ledger,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    soft_limit: int = SOFT_LIMIT,
    soft_window: timedelta = SOFT_WINDOW,
    trust_unmatched: bool = False,
) -> BounceImport:
    """Suppress the hard bounces of a mailbox, record its soft bounces; importing twice is safe.

    A soft bounce is dated by the report (Last-Attempt-Date, Arrival-Date, Date), else
    by ``clock``; the address is suppressed when ``soft_limit`` of them fall within
    ``soft_window`` ending at the latest one.

    A report counts only if the message it returns carries the Message-ID this ledger
    sent to that address: anyone can mail a forged bounce to the bounce mailbox, and it
    must not unsubscribe a reader. ``trust_unmatched`` acts on every report (bounces of
    mail sent by another tool, or reports that quote no headers).
    """

    def unmatched(
        kind: Literal["hard", "soft", "complaint", "delay"], address: str, status: str
    ) -> bool:
        if trust_unmatched or sent_message(ledger, address_key(address), original_id):
            return False
        result.unmatched += 1
        result.events.append(BounceEvent(address_key(address), kind, status, "", "unmatched"))
        return True

    result = BounceImport(source=display_path(path))
    parser = BytesParser(policy=email.policy.default)
    source = path.name
    for position, data in mailbox_messages(path):
        result.messages += 1
        try:
            read = read_message(parser, data)
        except Exception as exc:
            # A message the parser chokes on (1,000 nested multiparts: RecursionError) is
            # named and skipped; it must not stop every report after it, run after run.
            reason = f"{type(exc).__name__}: {exc}"[:200]
            result.unreadable.append(UnreadableMessage(position, raw_message_id(data), reason))
            continue
        statuses = read.statuses
        original_id = read.original_id
        if statuses is None:
            complainer = read.complainer
            if complainer is None:
                result.ignored += 1
                continue
            result.complaints += 1
            if unmatched("complaint", complainer, ""):
                continue
            new = suppress(
                ledger, complainer, reason="complained", source=source, detail="abuse report"
            )
            result.suppressed += new
            result.events.append(
                BounceEvent(
                    address_key(complainer),
                    "complaint",
                    "",
                    "",
                    "suppressed" if new else "already-suppressed",
                )
            )
            continue
        result.reports += 1
        # A soft bounce counts once per message we sent: the delay warnings and the final
        # report about one message are one bounce. The report's own id stands in only
        # when it quotes no Message-ID.
        message_id = original_id or read.own_id
        if not message_id:
            message_id = "sha256:" + hashlib.sha256(data).hexdigest()
        for status in statuses:
            permanent = status.status.startswith("5") and status.action == "failed"
            transient = status.status.startswith("4") and status.action == "failed"
            detail = " ".join(x for x in (status.status, status.diagnostic) if x)
            if status.action == "delayed":
                result.delayed += 1
                if unmatched("delay", status.address, status.status):
                    continue
                result.events.append(
                    BounceEvent(
                        address_key(status.address),
                        "delay",
                        status.status,
                        status.diagnostic,
                        "noted",
                    )
                )
            elif permanent:
                result.hard += 1
                if unmatched("hard", status.address, status.status):
                    continue
                new = suppress(
                    ledger, status.address, reason="bounced", source=source, detail=detail
                )
                result.suppressed += new
                result.events.append(
                    BounceEvent(
                        address_key(status.address),
                        "hard",
                        status.status,
                        status.diagnostic,
                        "suppressed" if new else "already-suppressed",
                    )
                )
            elif transient:
                result.soft += 1
                if unmatched("soft", status.address, status.status):
                    continue
                result.events.append(
                    _soft_bounce(
                        ledger,
                        status,
                        message_id=message_id,
                        when=status.when or clock().astimezone(UTC),
                        source=source,
                        detail=detail,
                        limit=soft_limit,
                        window=soft_window,
                        result=result,
                    )
                )
            else:
                result.other += 1
    return result


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _most_in_window(times: list[str], window: timedelta) -> int:
    """The most soft bounces within any ``window``: the same figure whatever order the
    reports were imported in."""
    moments = sorted(datetime.fromisoformat(t) for t in times)
    most = start = 0
    for end, moment in enumerate(moments):
        while moment - moments[start] > window:
            start += 1
        most = max(most, end - start + 1)
    return most


def _soft_bounce(
    ledger: Ledger,
    status: RecipientStatus,
    *,
    message_id: str,
    when: datetime,
    source: str,
    detail: str,
    limit: int,
    window: timedelta,
    result: BounceImport,
) -> BounceEvent:
    key = address_key(status.address)
    with ledger.transaction():
        recorded = record_soft_bounce(
            ledger,
            key,
            message_id=message_id,
            status=status.status,
            detail=status.diagnostic,
            source=source,
            at=_iso(when),
        )
        count = _most_in_window(soft_bounce_times(ledger, key), window)
        outcome: Literal["suppressed", "already-suppressed", "recorded", "seen-before"]
        outcome = "recorded" if recorded else "seen-before"
        if count >= limit:
            new = suppress(
                ledger,
                key,
                reason="bounced",
                source=source,
                detail=f"{count} soft bounces in {window.days} days, last: {detail}",
            )
            result.suppressed += new
            outcome = "suppressed" if new else "already-suppressed"
    return BounceEvent(key, "soft", status.status, status.diagnostic, outcome, soft_count=count)
