"""What a campaign did and where it stands: states, the report, and why a run stopped.

A reader's row in the ledger is in one :class:`DeliveryState`; a run's figures and the
campaign's standing travel as a :class:`CampaignReport`, which ``send``, ``status``,
``run-due`` and the archive read. A run that stops before its end raises a
:class:`CampaignStopped` (the relay refused us, the circuit breaker tripped, an
interrupt, a snapshot that failed) that carries the report of where the campaign was
left, so the CLI can say what was sent before it says why it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Self

from digest_mail.errors import (
    EXIT_COMPLETE,
    EXIT_INCOMPLETE,
    EXIT_STOPPED,
    EXIT_UNCERTAIN,
    DigestMailError,
)
from digest_mail.ledger import campaigns, senders
from digest_mail.ledger.db import Ledger
from digest_mail.transport.errors import SMTPUTF8_MISSING

SNAPSHOT_UNFINISHED = "the list snapshot did not finish: run the send again to complete it"


class DeliveryState(StrEnum):
    """Where one reader of a campaign stands; the value is what the ledger stores."""

    QUEUED = "queued"
    SENDING = "sending"  # claimed: its message is going out now
    SENT = "sent"
    DEFERRED = "deferred"  # still refused for now after retrying for [smtp] retry_for
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    SKIPPED = "skipped"  # an invalid row of the list
    # In flight when a run died, or its session broke after the final dot: it may have
    # been accepted.
    UNCERTAIN = "uncertain"


class CampaignError(DigestMailError):
    """A campaign cannot start or had to stop; the ledger is intact."""


class CampaignStopped(CampaignError):
    """A run that stopped before its end; ``report`` is where the campaign was left.

    The sender raises these without a report (it has none yet); the campaign records
    the stop and raises the same kind again through :meth:`reported`."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        exit_code: int | None = None,
        report: CampaignReport | None = None,
    ) -> None:
        super().__init__(message, hint=hint, exit_code=exit_code)
        self.report = report

    def reported(self, report: CampaignReport) -> Self:
        """This stop with the campaign's report, its hint ending in how to resume."""
        resume = f"rerun '{report.resume_command()}' to resume"
        hint = f"{self.hint}; then {resume}" if self.hint else resume
        return type(self)(self.message, hint=hint, exit_code=self.exit_code, report=report)


class BreakerTripped(CampaignStopped):
    """Too many of the first recipients were refused for a list to be that bad: the run
    stopped, the refused rows went back to queued, nobody was suppressed."""

    exit_code = EXIT_STOPPED


class CampaignInterrupted(CampaignStopped):
    """Ctrl-C or SIGTERM: in-flight messages were finished or released."""

    exit_code = EXIT_STOPPED


class DeliveryStop(CampaignStopped):
    """The relay refused us; the message is the transport's one-line reason."""

    exit_code = EXIT_STOPPED


class SnapshotFailed(CampaignStopped):
    """The snapshot writer stopped before the whole list was in the ledger."""


class NothingToSend(CampaignError):
    """The list has nobody to send to (empty, everyone suppressed or invalid). No
    campaign is recorded: once readers are added, the edition goes out."""


def nobody_to_send(
    *,
    lists: Sequence[str],
    kind: str,
    total: int,
    suppressed: int,
    invalid: int,
    suppressed_emails: Sequence[str],
) -> NothingToSend:
    """The one line that says why a send reached nobody, and the way out."""
    list_name = lists[0]
    if kind == "test":
        if suppressed and suppressed == total:
            who = ", ".join(suppressed_emails)
            more = (
                f" (and {suppressed - len(suppressed_emails)} more)"
                if (suppressed > len(suppressed_emails))
                else ""
            )
            verb = "is" if suppressed == 1 else "are"
            return NothingToSend(
                f"nobody to test-send to: {who}{more} {verb} suppressed (unsubscribed or "
                "bounced), so the test reached no one",
                hint=(
                    "if they want mail again: 'digest-mail suppressions remove "
                    f"{suppressed_emails[0]}'; or test-send --to another address"
                ),
            )
        return NothingToSend(
            # "0 sent" would read as success to an editor waiting for the test.
            f"nobody to test-send to: subscribers/{list_name}.csv has no subscribed address",
            hint=f"add yours with 'digest-mail subscribers add {list_name} you@example.jp'",
        )
    add = f"'digest-mail subscribers add {list_name} ADDRESS'"
    check = f"'digest-mail subscribers check {list_name}'"
    where = lists_phrase(lists)
    if total == 0 and invalid == 0:
        has, empty = ("has", "it is empty") if len(lists) == 1 else ("have", "they are empty")
        return NothingToSend(
            f"nothing to send: {where} {has} no subscribed reader ({empty})",
            hint=f"add readers with {add}, then send again",
        )
    if invalid == 0:
        return NothingToSend(
            f"nothing to send: all {suppressed} readers of {where} are suppressed "
            "(unsubscribed or bounced)",
            hint=f"add readers with {add}; see 'digest-mail suppressions list'",
        )
    if total == 0:
        return NothingToSend(
            f"nothing to send: all {invalid} rows of {where} are invalid",
            hint=f"fix them (see {check}) or add readers with {add}",
        )
    return NothingToSend(
        f"nothing to send: {where} has {suppressed} suppressed and {invalid} invalid "
        "rows and no other reader",
        hint=f"fix the invalid rows (see {check}) or add readers with {add}",
    )


@dataclass
class SenderStanding:
    """One sender of a campaign (a run of ``send`` on some host) and its share."""

    sender: str
    host: str
    pid: int
    relay: str
    state: str  # sending (alive now), finished, stopped, died
    note: str
    sent: int = 0
    in_flight: int = 0  # claimed or held for a retry
    uncertain: int = 0
    failed: int = 0
    deferred: int = 0

    @property
    def has_share(self) -> bool:
        return bool(self.sent or self.in_flight or self.uncertain or self.failed or self.deferred)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class CampaignReport:
    """What a run of a campaign did, and where the campaign stands now."""

    campaign_id: str
    edition: str
    list_name: str
    total: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: int = 0
    skipped_invalid: int = 0
    uncertain: int = 0
    queued: int = 0
    kind: str = "campaign"
    state: str = ""
    sent_this_run: int = 0
    # Recipients this run reached a final answer for (sent, failed or deferred).
    tried_this_run: int = 0
    transport: str = ""
    stopped: str = ""  # why the run stopped early, empty when it ran to the end
    failures: list[dict[str, Any]] = field(default_factory=list)
    uncertain_addresses: list[str] = field(default_factory=list)
    dry_run: bool = False
    # A dry run: recipients left to send whose local part is not ASCII (they need a
    # relay that offers SMTPUTF8), the first few of them, and what to warn about.
    needs_smtputf8: int = 0
    smtputf8_examples: list[str] = field(default_factory=list)
    # Failed for our relay's missing SMTPUTF8 (not the reader's fault, not suppressed);
    # the next run tries them again, through whatever relay is configured then.
    unsent_smtputf8: int = 0
    warnings: list[str] = field(default_factory=list)
    # The campaign's lists (one, or several sent each address once); () means list_name.
    lists: tuple[str, ...] = ()
    # Readers left out because another campaign of this edition already had them.
    already_received: int = 0
    # Each run of send on the campaign (several at once on a shared ledger).
    senders: list[SenderStanding] = field(default_factory=list)
    # Rows in flight or held for a retry by live senders: theirs to finish.
    with_other_senders: int = 0
    # A ledger several hosts share (PostgreSQL): status shows each sender's share.
    shared_ledger: bool = False

    @property
    def list_names(self) -> tuple[str, ...]:
        return self.lists or (self.list_name,)

    @property
    def complete(self) -> bool:
        return (
            not self.stopped
            and self.queued == 0
            and self.deferred == 0
            and self.uncertain == 0
            and self.unsent_smtputf8 == 0
        )

    @property
    def handed_over(self) -> bool:
        """This run's share is done and nothing failed it: what is left is in flight
        with other live senders, which finish the campaign."""
        return bool(
            self.with_other_senders
            and not self.stopped
            and self.queued <= self.with_other_senders
            and self.deferred == 0
            and self.uncertain == 0
            and self.unsent_smtputf8 == 0
        )

    @property
    def exit_code(self) -> int:
        """The exit status of a run that ended this way (a run the relay or the breaker
        stopped ends on its :class:`DeliveryStop` instead): 0 complete, 5 only uncertain
        rows remain, 4 anything else is left to send."""
        if self.complete:
            return EXIT_COMPLETE
        if self.handed_over:
            return EXIT_COMPLETE
        if self.queued == 0 and self.deferred == 0 and self.uncertain:
            return EXIT_UNCERTAIN
        return EXIT_INCOMPLETE

    def summary(self) -> str:
        text = (
            f"{self.sent} sent, {self.deferred} deferred, {self.failed} failed, "
            f"{self.suppressed} suppressed, {self.skipped_invalid} skipped-invalid"
        )
        if self.uncertain:
            text += f", {self.uncertain} uncertain"
        if self.queued:
            text += f", {self.queued} not yet sent"
        if self.already_received:
            text += f", {self.already_received} had it from another campaign"
        if self.unsent_smtputf8:
            text += f" ({self.unsent_smtputf8} of the failed need a relay with SMTPUTF8)"
        return text

    def resume_command(self) -> str:
        if self.kind == "test":
            return f"digest-mail test-send {self.edition}"
        lists = " ".join(f"--list {name}" for name in self.list_names)
        return f"digest-mail send {self.edition} {lists}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id,
            "kind": self.kind,
            "state": self.state,
            "edition": self.edition,
            "list": self.list_name,
            "lists": list(self.list_names),
            "total": self.total,
            "sent": self.sent,
            "deferred": self.deferred,
            "failed": self.failed,
            "suppressed": self.suppressed,
            "skipped_invalid": self.skipped_invalid,
            "uncertain": self.uncertain,
            "queued": self.queued,
            "already_received": self.already_received,
            "sent_this_run": self.sent_this_run,
            "tried_this_run": self.tried_this_run,
            "stopped": self.stopped,
            "complete": self.complete,
            "dry_run": self.dry_run,
            "transport": self.transport,
            "failures": self.failures,
            "uncertain_addresses": self.uncertain_addresses,
            "unsent_smtputf8": self.unsent_smtputf8,
            "warnings": self.warnings,
            "senders": [sender.as_dict() for sender in self.senders],
            "with_other_senders": self.with_other_senders,
            "resume": self.resume_command(),
        }


def lists_phrase(lists: Sequence[str]) -> str:
    """``list weekly`` or ``lists news, weekly``, for messages."""
    return f"list {lists[0]}" if len(lists) == 1 else f"lists {', '.join(lists)}"


def state_counts(ledger: Ledger, campaign_id: str) -> dict[str, int]:
    """The campaign's rows by state, every state present (0 when no row is in it)."""
    counts: dict[str, int] = dict.fromkeys(DeliveryState, 0)
    counts.update(campaigns.count_states(ledger, campaign_id))
    return counts


def nothing_to_send(ledger: Ledger, campaign_id: str, kind: str) -> NothingToSend:
    """The error for a campaign that reached nobody, from its rows."""
    counts = state_counts(ledger, campaign_id)
    return nobody_to_send(
        lists=campaigns.campaign_lists(ledger, campaign_id)
        or (campaigns.campaign_row(ledger, campaign_id)["list_name"],),
        kind=kind,
        total=sum(counts.values()) - counts[DeliveryState.SKIPPED],
        suppressed=counts[DeliveryState.SUPPRESSED],
        invalid=counts[DeliveryState.SKIPPED],
        suppressed_emails=campaigns.delivery_emails(
            ledger, campaign_id, [DeliveryState.SUPPRESSED], limit=3
        ),
    )


def campaign_report(ledger: Ledger, campaign_id: str) -> CampaignReport:
    """Where the campaign stands. Rows in flight whose sender is no longer alive (its
    lock is free: the process died) are counted and listed as uncertain, as the next
    run will mark them; rows live senders hold are queued, theirs to finish."""
    row = campaigns.campaign_row(ledger, campaign_id)
    live = senders.live_senders(ledger, campaign_id)
    # One read of the rows for every figure: while other senders record answers, two
    # reads would disagree (a row 'sending' in one, 'sent' in the next).
    by_sender = campaigns.count_by_sender(ledger, campaign_id)
    counts: dict[str, int] = dict.fromkeys(DeliveryState, 0)
    for got in by_sender.values():
        for state, n in got.items():
            counts[state] += n
    in_flight = sum(
        got[DeliveryState.SENDING] for sender, got in by_sender.items() if sender not in live
    )
    counts[DeliveryState.UNCERTAIN] += in_flight
    counts[DeliveryState.SENDING] -= in_flight
    uncertain_addresses = campaigns.delivery_emails(ledger, campaign_id, [DeliveryState.UNCERTAIN])
    if in_flight:
        uncertain_addresses += campaigns.orphaned_emails(ledger, campaign_id, live)
    return CampaignReport(
        campaign_id=campaign_id,
        edition=row["edition"],
        list_name=row["list_name"],
        lists=campaigns.campaign_lists(ledger, campaign_id),
        unsent_smtputf8=(
            campaigns.count_unanswered_failures(ledger, campaign_id, SMTPUTF8_MISSING)
            if counts[DeliveryState.FAILED]
            else 0
        ),
        already_received=row["already_received"],
        kind=row["kind"],
        state=row["state"],
        # An unfinished snapshot has no total yet: the recipients written so far.
        total=(
            sum(counts.values()) - counts[DeliveryState.SKIPPED]
            if row["state"] == "snapshotting"
            else row["total"]
        ),
        sent=counts[DeliveryState.SENT],
        deferred=counts[DeliveryState.DEFERRED],
        failed=counts[DeliveryState.FAILED],
        suppressed=counts[DeliveryState.SUPPRESSED],
        skipped_invalid=counts[DeliveryState.SKIPPED],
        uncertain=counts[DeliveryState.UNCERTAIN],
        queued=counts[DeliveryState.QUEUED] + counts[DeliveryState.SENDING],
        failures=campaigns.failures(ledger, campaign_id, limit=1000),
        uncertain_addresses=uncertain_addresses,
        senders=_standings(ledger, campaign_id, live, by_sender),
        shared_ledger=ledger.shared,
        with_other_senders=sum(
            got[DeliveryState.SENDING] + got[DeliveryState.QUEUED]
            for sender, got in by_sender.items()
            if sender in live
        ),
        stopped=(
            row["note"]
            if row["state"] == "stopped"
            else SNAPSHOT_UNFINISHED
            if row["state"] == "snapshotting"
            else f"no sender is running: {in_flight} were in flight when it died"
            if in_flight
            else ""
        ),
    )


def _standings(
    ledger: Ledger, campaign_id: str, live: set[str], by_sender: dict[str, Any]
) -> list[SenderStanding]:
    out = []
    for row in senders.sender_rows(ledger, campaign_id):
        got = by_sender.get(row.sender, {})
        alive = row.sender in live
        died = row.note == senders.DIED or (row.state == "sending" and not alive)
        orphaned = 0 if alive else got.get(DeliveryState.SENDING, 0)
        out.append(
            SenderStanding(
                sender=row.sender,
                host=row.host,
                pid=row.pid,
                relay=row.relay,
                state="died" if died else row.state,
                note=row.note,
                sent=got.get(DeliveryState.SENT, 0),
                in_flight=(
                    got.get(DeliveryState.SENDING, 0) + got.get(DeliveryState.QUEUED, 0)
                    if alive
                    else 0
                ),
                uncertain=got.get(DeliveryState.UNCERTAIN, 0) + orphaned,
                failed=got.get(DeliveryState.FAILED, 0),
                deferred=got.get(DeliveryState.DEFERRED, 0),
            )
        )
    return out


def uncertain_note(report: CampaignReport) -> str:
    """What keeps a finished run from completing the campaign, and what to do about it."""
    if report.unsent_smtputf8:
        return (
            f"{report.unsent_smtputf8} with a non-ASCII local part need a relay that offers "
            "SMTPUTF8: not sent, not suppressed; rerun through such a relay"
        )
    if report.uncertain:
        return (
            f"{report.uncertain} uncertain (in flight when a run or its connection died):"
            " resend with --resend-uncertain"
        )
    if report.deferred:
        return f"{report.deferred} deferred after retrying: rerun to try them again"
    return ""
