"""Campaigns: send one edition to its lists, resumable, never doubled.

A campaign is (edition, lists). When it first starts, the lists are snapshotted into the
ledger (:mod:`~.snapshot`: one ``deliveries`` row per recipient); then the sender
(:mod:`~.sender`) claims the queued rows, sends their messages and records each answer.
Every rerun sends only what is left: rows a crashed run left in flight are marked
``uncertain`` and resent only when asked (``resend_uncertain``), deferred rows get a new
retry window (:mod:`~.retry`), readers suppressed since the snapshot are left out.

This module runs that from start to end (:func:`send_campaign`): it takes the campaign's
lock, creates or resumes the campaign row, starts the snapshot, sends under signal
handlers (a first Ctrl-C or SIGTERM finishes what is in flight, a second abandons it)
and records how the run ended. A run that stops early raises a
:class:`~.report.CampaignStopped` that carries the campaign's report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digest_mail import eventloop
from digest_mail.audience.lists import require_list
from digest_mail.config import Workspace
from digest_mail.delivery import lock
from digest_mail.delivery.dryrun import dry_run_report
from digest_mail.delivery.interrupts import stop_on_signals
from digest_mail.delivery.report import (
    CampaignError,
    CampaignInterrupted,
    CampaignReport,
    CampaignStopped,
    DeliveryState,
    DeliveryStop,
    NothingToSend,
    campaign_report,
    nothing_to_send,
    state_counts,
    uncertain_note,
)
from digest_mail.delivery.sender import Options, Progress, Sender, options_for
from digest_mail.delivery.snapshot import (
    Item,
    Items,
    SnapshotFollower,
    SnapshotWriter,
    begin_snapshot,
    list_items,
    start_writer,
)
from digest_mail.errors import ConfigError
from digest_mail.ledger import campaigns, claims, senders
from digest_mail.ledger.db import Ledger, LedgerError, open_ledger
from digest_mail.mail.body import BodyEncoding
from digest_mail.mail.message import MessageTemplate
from digest_mail.transport.errors import SMTPUTF8_MISSING, RelayError
from digest_mail.transport.factory import open_transport
from digest_mail.transport.protocol import Transport
from digest_mail.transport.ratelimit import Clock

if TYPE_CHECKING:
    # Only a type: importing edition at start would load rendering for every send.
    from digest_mail.render.draft import HashedDraft

# A row in one of these states means the campaign's content went out (or may have).
_STARTED = (
    DeliveryState.SENT,
    DeliveryState.SENDING,
    DeliveryState.UNCERTAIN,
    DeliveryState.FAILED,
)


def campaign_id_for(edition: str, list_name: str | Sequence[str]) -> str:
    """``EDITION/LIST``; for several lists ``EDITION/A+B``, the names sorted: one
    campaign whatever order the lists were named in."""
    return f"{edition}/{'+'.join(list_names_of(list_name))}"


def list_names_of(value: str | Sequence[str]) -> tuple[str, ...]:
    """The lists of a campaign, sorted, each once."""
    names = (value,) if isinstance(value, str) else tuple(value)
    return tuple(sorted(set(names)))


def is_list(workspace: Workspace, name: str) -> bool:
    """Whether ``name`` is one of the workspace's subscriber lists (a bad name is none)."""
    try:
        return workspace.list_path(name).is_file()
    except ConfigError:
        return False


def count_recipients(
    workspace: Workspace, draft: HashedDraft, list_name: str | Sequence[str]
) -> CampaignReport:
    """How many a send would reach now (for the confirmation prompt); changes nothing."""
    return run_campaign(workspace, draft, list_name, dry_run=True)


def run_campaign(
    workspace: Workspace,
    draft: HashedDraft,
    list_name: str | Sequence[str],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    resend_uncertain: bool = False,
    progress: Progress | None = None,
    clock: Clock | None = None,
    dry_run: bool = False,
    transport: Transport | None = None,
    breaker: bool = True,
) -> CampaignReport:
    """Create or resume the campaign (draft's edition, ``list_name``) and send what is left.
    ``list_name`` may be several lists: one campaign, each address once.
    ``breaker=False`` turns the circuit breaker off (a list known to be stale)."""
    lists = list_names_of(list_name)
    if not lists:
        raise CampaignError("no list to send to", hint="name one with --list")
    paths = [require_list(workspace, name) for name in lists]
    label = "+".join(lists)
    if len(lists) > 1 and (any("+" in name for name in lists) or is_list(workspace, label)):
        # 'a+b' names the campaign of lists a and b: it must not be a list of its own.
        raise CampaignError(
            f"lists {', '.join(lists)} cannot be sent together: '+' joins list names in a "
            "campaign's name",
            hint="rename the list whose name contains '+', or send the lists one at a time",
        )

    def items(ledger: Ledger) -> Iterator[Item]:
        for name in lists:
            yield from list_items(workspace, name, ledger)

    return send_campaign(
        workspace,
        draft,
        label,
        campaign_id=campaign_id_for(draft.id, lists),
        kind="campaign",
        items=items,
        lists=lists,
        list_paths=paths,
        subject_prefix="",
        concurrency=concurrency,
        rate=rate,
        resend_uncertain=resend_uncertain,
        progress=progress,
        clock=clock,
        dry_run=dry_run,
        transport=transport,
        breaker=breaker,
    )


def send_campaign(
    workspace: Workspace,
    draft: HashedDraft,
    list_name: str,
    *,
    campaign_id: str,
    kind: str,
    items: Items,
    subject_prefix: str,
    concurrency: int | None,
    rate: float | None,
    resend_uncertain: bool,
    progress: Progress | None,
    clock: Clock | None,
    dry_run: bool = False,
    transport: Transport | None = None,
    lists: Sequence[str] = (),
    list_paths: Sequence[Path] = (),
    breaker: bool = True,
) -> CampaignReport:
    """Create or resume a campaign and send. With ``list_paths`` (subscriber lists, not
    a test send), a new snapshot is written while the first messages already go out
    (:class:`~.snapshot.SnapshotWriter`), where the process can fork."""
    from digest_mail.render.draft import verify_content

    # Every send (run-due included) hashes the strings its messages are built from: an
    # approval, or a campaign already under way, pins that hash and nothing else.
    verify_content(draft)
    if not dry_run:
        from digest_mail.delivery.identity import refuse_sample_identity

        refuse_sample_identity(workspace)
    with open_ledger(workspace) as ledger, contextlib.ExitStack() as stack:
        lock.only_sender(ledger, campaign_id)
        row = _existing_campaign(ledger, campaign_id, draft, dry_run=dry_run)
        if dry_run:
            return dry_run_report(
                ledger,
                campaign_id,
                draft,
                lists or (list_name,),
                kind,
                items(ledger),
                existing=row is not None,
                label=list_name,
            )
        row = _open_campaign(ledger, campaign_id, draft, row, list_name, kind=kind, lists=lists)
        me = stack.enter_context(lock.sender_seat(ledger, campaign_id))
        start = begin_snapshot(
            ledger,
            campaign_id,
            edition=draft.id if kind == "campaign" else None,
            snapshotting=row["state"] == "snapshotting",
            items=items,
            list_paths=list_paths,
        )
        if start.turn is not None:
            stack.callback(start.turn.release)
        expected, follower = start.expected, start.follower
        writer: SnapshotWriter | None = None
        try:
            if start.turn is not None:  # a forked writer streams the list
                writer = start_writer(
                    workspace, ledger, campaign_id, items, start.after_seq, start.turn
                )
            report = _ready_to_send(ledger, campaign_id, resend_uncertain=resend_uncertain)
            options = options_for(workspace, concurrency, clock, progress, breaker=breaker)
            if writer is not None or follower is not None:
                # Until the snapshot is complete, the list's data rows are the progress total.
                report.queued = max(report.queued, expected)
                report.stopped = ""
            elif report.queued == 0:
                return _nothing_left(ledger, campaign_id, kind, report, me)
            the_transport = transport or open_transport(
                workspace, concurrency=options.concurrency, rate=rate, clock=options.clock
            )
            report.transport = the_transport.description
            senders.set_relay(ledger, campaign_id, me, the_transport.description)
            run = _Run(workspace, ledger, campaign_id, draft, list_name, subject_prefix, me)
            _send(run, report, options, the_transport, writer or follower)
            return _finished(ledger, campaign_id, kind, report, me)
        finally:
            if writer is not None:
                writer.close()


def _existing_campaign(
    ledger: Ledger, campaign_id: str, draft: HashedDraft, *, dry_run: bool
) -> Any:
    """The campaign's row if it exists and may go on with this draft, else None.

    A draft that changed after messages went out is refused. A campaign that never sent
    a message (it found nobody, and older versions recorded that as finished) is no sent
    campaign: it is forgotten (a dry run only pretends), so the lists as they are now get
    the edition."""
    row = campaigns.campaign_row(ledger, campaign_id)
    if row is not None and row["content_hash"] != draft.content_hash:
        counts = state_counts(ledger, campaign_id)
        if sum(counts[state] for state in _STARTED):
            raise CampaignError(
                f"draft {draft.id} changed after campaign {campaign_id} started "
                f"({counts[DeliveryState.SENT]} already sent)",
                # Whether or not it was ever approved: what went out is what was sent.
                hint=(
                    "send the changed draft as a new edition (compose --edition NEW), "
                    "or restore the draft that was sent"
                ),
            )
    if row is None or row["state"] == "snapshotting" or campaigns.claimed_any(ledger, campaign_id):
        return row
    if not dry_run:
        campaigns.discard_campaign(ledger, campaign_id)
    return None


def _open_campaign(
    ledger: Ledger,
    campaign_id: str,
    draft: HashedDraft,
    row: Any,
    list_name: str,
    *,
    kind: str,
    lists: Sequence[str],
) -> Any:
    """The campaign's row, made if it is new; a resumed campaign pins the draft's hash."""
    if row is None:
        campaigns.create_campaign(
            ledger,
            campaign_id,
            edition=draft.id,
            list_name=list_name,
            kind=kind,
            content_hash=draft.content_hash,
            lists=lists,
        )
        return campaigns.campaign_row(ledger, campaign_id)
    if row["content_hash"] != draft.content_hash:
        campaigns.set_content_hash(ledger, campaign_id, draft.content_hash)
    return row


def _ready_to_send(ledger: Ledger, campaign_id: str, *, resend_uncertain: bool) -> CampaignReport:
    """What this run has to send: rows a dead run left in flight become uncertain,
    deferred ones (and uncertain ones, when asked) are queued again, readers suppressed
    since the snapshot are left out."""
    lock.settle_dead_senders(ledger, campaign_id)
    claims.requeue(
        ledger, campaign_id, uncertain=resend_uncertain, unanswered_reply=SMTPUTF8_MISSING
    )
    claims.apply_suppressions(ledger, campaign_id)
    return campaign_report(ledger, campaign_id)


def _nothing_left(
    ledger: Ledger, campaign_id: str, kind: str, report: CampaignReport, me: str
) -> CampaignReport:
    """A run with nothing queued: record the campaign as it stands (or refuse one that
    reached nobody)."""
    senders.finish(ledger, campaign_id, me, "finished")
    if not campaigns.claimed_any(ledger, campaign_id) and not report.already_received:
        raise _discard_nobody(ledger, campaign_id, kind)
    campaigns.finish_campaign(
        ledger,
        campaign_id,
        "finished" if report.uncertain == 0 else "stopped",
        uncertain_note(report),
    )
    final = campaign_report(ledger, campaign_id)
    final.transport = "nothing to send"
    return final


def _finished(
    ledger: Ledger, campaign_id: str, kind: str, run: CampaignReport, me: str
) -> CampaignReport:
    """Record a run that went to its end; the campaign's report with this run's figures.
    While other senders still have rows in flight, the campaign is theirs to finish:
    this run's share is done, and the campaign stays ``sending``."""
    senders.finish(ledger, campaign_id, me, "finished")
    lock.settle_dead_senders(ledger, campaign_id)
    final = campaign_report(ledger, campaign_id)
    if final.with_other_senders:
        _add_run(final, run)
        final.stopped = ""
        return final
    nobody = not campaigns.claimed_any(ledger, campaign_id) and not final.already_received
    if final.complete and nobody:
        # The streamed snapshot found only suppressed or invalid rows.
        raise _discard_nobody(ledger, campaign_id, kind)
    _add_run(final, run)
    # The row may still carry an earlier run's stop reason; this run decides anew.
    final.stopped = ""
    final.state = "finished" if final.complete else "stopped"
    campaigns.finish_campaign(ledger, campaign_id, final.state, uncertain_note(final))
    final.stopped = "" if final.complete else uncertain_note(final)
    return final


def _add_run(final: CampaignReport, run: CampaignReport) -> None:
    """This run's own figures, on the campaign's report."""
    final.sent_this_run = run.sent_this_run
    final.tried_this_run = run.tried_this_run
    final.transport = run.transport


def _discard_nobody(ledger: Ledger, campaign_id: str, kind: str) -> NothingToSend:
    """A campaign that found nobody to send to is not recorded: a finished campaign
    would keep the edition from the readers added later."""
    error = nothing_to_send(ledger, campaign_id, kind)
    campaigns.discard_campaign(ledger, campaign_id)
    return error


# --- one run of the sender -------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """What a run sends, and where it records it."""

    workspace: Workspace
    ledger: Ledger
    campaign_id: str
    draft: HashedDraft
    list_name: str
    subject_prefix: str
    sender_id: str


def _send(
    run: _Run,
    report: CampaignReport,
    options: Options,
    transport: Transport,
    writer: SnapshotWriter | SnapshotFollower | None,
) -> None:
    """Send until done or stopped. A stop is recorded on the campaign and raised again
    with the campaign's report (:meth:`~.report.CampaignStopped.reported`)."""
    ledger, campaign_id = run.ledger, run.campaign_id
    try:
        eventloop.run(_deliver(run, report, options, transport, writer))
    except KeyboardInterrupt:  # a second Ctrl-C: whatever was claimed stays 'sending'
        senders.finish(ledger, campaign_id, run.sender_id, "stopped", "killed while sending")
        campaigns.finish_campaign(ledger, campaign_id, "stopped", "killed while sending")
        raise
    except (CampaignError, LedgerError) as exc:  # the ledger refused a batch of results
        stop = (
            exc
            if isinstance(exc, CampaignStopped)
            else CampaignStopped(exc.message, hint=exc.hint, exit_code=exc.exit_code)
        )
        senders.finish(ledger, campaign_id, run.sender_id, "stopped", stop.message)
        campaigns.finish_campaign(ledger, campaign_id, "stopped", stop.message)
        final = campaign_report(ledger, campaign_id)
        _add_run(final, report)
        final.stopped = stop.message
        raise stop.reported(final) from None


async def _deliver(
    run: _Run,
    report: CampaignReport,
    options: Options,
    transport: Transport,
    snapshot: SnapshotWriter | SnapshotFollower | None,
) -> None:
    """The sender's run on the event loop, from the relay's first answer to its close."""
    from digest_mail.mail.dkim import load_signer

    sign = load_signer(run.workspace)
    try:
        try:
            encoding = await _choose_encoding(transport)
        except RelayError as exc:
            raise DeliveryStop(exc.message, hint=exc.hint) from None
        template = MessageTemplate(
            run.draft,
            settings=run.workspace.settings,
            list_name=run.list_name,
            subject_prefix=run.subject_prefix,
            test_send=bool(run.subject_prefix),  # only a test send marks its subject
            body_encoding=encoding,
            # Bytes in SMTP DATA form straight from the builder, for a client that takes
            # them (the pipelining connection); a signer needs the plain message.
            dot_stuffed=sign is None and transport.takes_dot_stuffed,
        )
        sender = Sender(
            ledger=run.ledger,
            campaign_id=run.campaign_id,
            transport=transport,
            template=template,
            workspace=run.workspace,
            list_name=run.list_name,
            report=report,
            options=options,
            sign=sign,
            snapshot=snapshot,
            sender_id=run.sender_id,
        )
        with stop_on_signals(sender) as signals:
            await sender.run()
        if sender.stop_error is not None:
            raise sender.stop_error
        if signals.received and any(w.cancelled() for w in sender.workers):
            raise CampaignInterrupted(
                "interrupted twice: messages in flight were abandoned and are now uncertain"
            )
        if signals.received:
            raise CampaignInterrupted(
                "interrupted: in-flight messages were finished, the rest is queued"
            )
    finally:
        await transport.close()


async def _choose_encoding(transport: Transport) -> BodyEncoding:
    return "8bit" if await transport.supports_8bit() else "base64"


# --- status ----------------------------------------------------------------------------
