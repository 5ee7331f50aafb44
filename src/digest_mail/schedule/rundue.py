"""Scheduled sends: each schedule's due slot, claimed once in the ledger, sent once.

Each ``[[schedule]]`` names a list, a five-field cron expression and an IANA zone (its
slots: :mod:`digest_mail.schedule.slots`). ``run_due`` looks only at the most recent
slot at or before *now*:

* not yet recorded, and missed by more than ``late_after`` → recorded as skipped (late);
* not yet recorded, nothing approved → skipped, and the staff list gets a short notice;
* not yet recorded → claimed (one INSERT on PRIMARY KEY (schedule, slot), ON CONFLICT DO
  NOTHING: of any number of overlapping runs, on one host or on several sharing a
  PostgreSQL ledger, the database lets exactly one claim it), then the approved
  edition goes to the list through :func:`digest_mail.delivery.campaign.run_campaign`, the same
  path as ``send --yes``;
* claimed or sending, and no process holds the schedule's session lock in the ledger
  (:meth:`~digest_mail.ledger.db.Ledger.try_lock`, dropped when its holder dies) → the run
  that claimed it died, here or on another host: the campaign is resumed (run_campaign
  sends only what is not yet sent);
* failed (the relay was down, the list unreadable …) → retried by later runs until the
  slot is ``late_after`` old, then left failed;
* sent or skipped → nothing to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from digest_mail.config import Workspace
from digest_mail.errors import EXIT_COMPLETE, EXIT_ERROR, EXIT_INCOMPLETE, DigestMailError
from digest_mail.ledger.db import Ledger, open_ledger
from digest_mail.ledger.schedule_runs import (
    ScheduleRun,
    claim_slot,
    get_run,
    list_runs,
    slot_key,
    update_run,
)
from digest_mail.schedule.editions import choose_edition
from digest_mail.schedule.notice import notify_staff
from digest_mail.schedule.slots import Schedule, aware, require_schedules

if TYPE_CHECKING:
    pass

__all__ = ["RunOutcome", "rehearse_due", "run_due"]


# --- one process per schedule ------------------------------------------------------------


@contextmanager
def _slot_lock(ledger: Ledger, schedule: Schedule) -> Iterator[bool]:
    """The ledger's session lock on a schedule, held while a process works on it.

    The ledger claim decides who sends a slot; this lock tells a slot whose sender died
    (claimed, lock free: resume it) from one being sent right now (lock held: leave it).
    It lives where the ledger does (a ``flock`` file beside the SQLite file, an advisory
    lock on PostgreSQL), so run-due on every host sharing the ledger sees it, and it goes
    with the process (or the host) holding it: the ``ledger`` connection stays open for
    as long as the slot is worked on.
    """
    name = f"schedule:{schedule.name}"
    if not ledger.try_lock(name):
        yield False
        return
    try:
        yield True
    finally:
        ledger.unlock(name)


# --- running what is due -------------------------------------------------------------------

Action = Literal[
    "sent", "incomplete", "skipped", "failed", "busy", "done", "would send", "would skip"
]


@dataclass(frozen=True)
class RunOutcome:
    """What ``run_due`` did with one schedule: one line for people, a dict for scripts."""

    schedule: str
    list_name: str
    slot: datetime
    zone: str
    action: Action
    state: str
    message: str
    edition: str | None = None
    campaign_id: str | None = None
    notice: str | None = None
    report: dict[str, Any] | None = field(default=None, compare=False)
    # The exit status this outcome asks of run-due (see errors.py); None: 1 for a failed
    # slot, 0 otherwise.
    status: int | None = None

    @property
    def exit_code(self) -> int:
        if self.status is not None:
            return self.status
        return EXIT_ERROR if self.action == "failed" else EXIT_COMPLETE

    def line(self) -> str:
        local = self.slot.astimezone(ZoneInfo(self.zone))
        when = f"{local:%Y-%m-%d %H:%M %Z} ({slot_key(self.slot)})"
        text = f"{self.schedule}: {when}: {self.action}: {self.message}"
        if self.notice:
            text += f"; {self.notice}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "list": self.list_name,
            "slot": slot_key(self.slot),
            "slot_local": self.slot.astimezone(ZoneInfo(self.zone)).isoformat(),
            "action": self.action,
            "state": self.state,
            "edition": self.edition,
            "campaign_id": self.campaign_id,
            "message": self.message,
            "notice": self.notice,
            "report": self.report,
            "exit_code": self.exit_code,
        }


def run_due(workspace: Workspace, *, now: datetime | None = None) -> list[RunOutcome]:
    """Send (or skip) each schedule's most recent due slot, once; one outcome per schedule."""
    moment = aware(now) if now is not None else datetime.now(UTC)
    return [_run_schedule(workspace, schedule, moment) for schedule in require_schedules(workspace)]


def rehearse_due(workspace: Workspace, *, now: datetime | None = None) -> list[RunOutcome]:
    """What :func:`run_due` would do now, without doing it: no slot is claimed, nothing is
    sent, no staff notice goes out (``run-due --dry-run``, with ``--now`` to rehearse)."""
    from digest_mail.transport.factory import describe_transport

    moment = aware(now) if now is not None else datetime.now(UTC)
    schedules = require_schedules(workspace)
    via = describe_transport(workspace)
    with open_ledger(workspace) as ledger:
        return [_rehearse(workspace, ledger, s, moment, via) for s in schedules]


def _outcome(
    schedule: Schedule,
    slot: datetime,
    action: Action,
    state: str,
    message: str,
    **extra: Any,
) -> RunOutcome:
    """What happened to ``schedule``'s ``slot``: a dry run and a real run say it alike."""
    return RunOutcome(
        schedule=schedule.name,
        list_name=schedule.list_name,
        slot=slot,
        zone=schedule.zone_name,
        action=action,
        state=state,
        message=message,
        **extra,
    )


def _rehearse(
    workspace: Workspace, ledger: Ledger, schedule: Schedule, now: datetime, via: str
) -> RunOutcome:
    from digest_mail.delivery.campaign import count_recipients
    from digest_mail.render.draft import load_draft

    slot = schedule.latest_slot(now)
    outcome = partial(_outcome, schedule, slot)
    run = get_run(ledger, schedule.name, slot)
    if run is not None and run.state in ("sent", "skipped"):
        return _recorded(outcome, run)
    if run is not None and run.state == "failed" and now - slot > schedule.late_after:
        return outcome("done", "failed", f"failed earlier and now past late_after: {run.note}")
    if run is None:
        late = now - slot
        if late > schedule.late_after:
            return outcome("would skip", "unclaimed", _late_note(ledger, schedule, slot, late))
        choice = choose_edition(workspace, ledger, schedule)
        if choice.draft is None:
            staff = workspace.settings.lists.staff
            return outcome(
                "would skip",
                "unclaimed",
                f"nothing to send: {choice.reason} (staff list {staff} would get a notice)",
            )
        draft = choice.draft
        verb = ""
    else:
        draft = load_draft(workspace, run.edition or "")
        verb = f"the rest of an interrupted run ({run.state}): "
    try:
        preview = count_recipients(workspace, draft, schedule.list_name)
    except DigestMailError as exc:
        # What the real run would record as a failed slot (an empty or unreadable list …).
        hint = f" ({exc.hint})" if exc.hint else ""
        return outcome(
            "failed", "unclaimed", f"{draft.id} to {schedule.list_name} would fail: {exc}{hint}"
        )
    return outcome(
        "would send",
        run.state if run is not None else "unclaimed",
        f"{verb}{draft.id} to {preview.queued + preview.deferred} of list {schedule.list_name}"
        f" via {via} ({preview.sent} already sent, {preview.suppressed} suppressed)",
        edition=draft.id,
    )


def _run_schedule(workspace: Workspace, schedule: Schedule, now: datetime) -> RunOutcome:
    with open_ledger(workspace) as ledger, _slot_lock(ledger, schedule) as locked:
        return _run_locked(workspace, ledger, schedule, now, locked=locked)


def _run_locked(
    workspace: Workspace, ledger: Ledger, schedule: Schedule, now: datetime, *, locked: bool
) -> RunOutcome:
    """The slot due at ``now``, on a ledger connection that holds the schedule's lock
    (``locked``) for as long as this runs; without it, only what another process does."""
    slot = schedule.latest_slot(now)
    outcome = partial(_outcome, schedule, slot)
    run = get_run(ledger, schedule.name, slot)
    if not locked:
        return outcome(
            "busy",
            run.state if run is not None else "unclaimed",
            "another digest-mail process is running this schedule now",
            edition=run.edition if run is not None else None,
        )
    if run is None:
        late = now - slot
        if late > schedule.late_after:
            note = _late_note(ledger, schedule, slot, late)
            if not claim_slot(
                ledger, schedule.name, slot, state="skipped", edition=None, note=note, now=now
            ):
                return _recorded(outcome, get_run(ledger, schedule.name, slot))
            return outcome("skipped", "skipped", note)
        try:
            choice = choose_edition(workspace, ledger, schedule)
        except DigestMailError as exc:
            return outcome("failed", "unclaimed", f"cannot choose an edition: {exc}")
        if choice.draft is None:
            note = f"nothing sent: {choice.reason}"
            if not claim_slot(
                ledger, schedule.name, slot, state="skipped", edition=None, note=note, now=now
            ):
                return _recorded(outcome, get_run(ledger, schedule.name, slot))
            notice = notify_staff(
                workspace, ledger, schedule, slot, choice.reason_ja or choice.reason
            )
            return outcome("skipped", "skipped", note, notice=notice)
        if not claim_slot(
            ledger,
            schedule.name,
            slot,
            state="claimed",
            edition=choice.draft.id,
            note="claimed",
            now=now,
        ):
            return _recorded(outcome, get_run(ledger, schedule.name, slot))
        run = get_run(ledger, schedule.name, slot)
        assert run is not None
    elif run.state in ("sent", "skipped"):
        return _recorded(outcome, run)
    elif run.state == "failed" and now - slot > schedule.late_after:
        return outcome(
            "done",
            "failed",
            f"failed earlier and now past late_after, not retried: {run.note}",
            edition=run.edition,
            campaign_id=run.campaign_id,
        )
    return _send(workspace, ledger, schedule, slot, run, outcome, now)


def _late_note(ledger: Ledger, schedule: Schedule, slot: datetime, late: timedelta) -> str:
    """Why a slot older than late_after is not sent. Before a schedule's first run-due
    (no run of it recorded yet) the slot was not missed: the schedule was not running."""
    if not list_runs(ledger, schedule.name):
        following = schedule.local(next(schedule.slots_after(slot)))
        return (
            "came before this schedule's first run-due, so nothing was due yet; the first"
            f" slot it sends is {following:%Y-%m-%d %H:%M %Z}"
        )
    return f"missed by {_human(late)} (late_after = {schedule.late_after_text}); not sent late"


def _recorded(outcome: Callable[..., RunOutcome], run: ScheduleRun | None) -> RunOutcome:
    if run is None:  # pragma: no cover - a claim that lost always finds the winner's row
        raise DigestMailError("schedule run vanished from the ledger")
    return outcome(
        "done",
        run.state,
        f"already {run.state}"
        + (f" ({run.edition})" if run.edition else "")
        + (f": {run.note}" if run.note else ""),
        edition=run.edition,
        campaign_id=run.campaign_id,
    )


def _send(
    workspace: Workspace,
    ledger: Ledger,
    schedule: Schedule,
    slot: datetime,
    run: ScheduleRun,
    outcome: Callable[..., RunOutcome],
    now: datetime,
) -> RunOutcome:
    from digest_mail.delivery.campaign import run_campaign
    from digest_mail.delivery.identity import refuse_sample_identity
    from digest_mail.delivery.report import CampaignInterrupted
    from digest_mail.render.draft import load_draft
    from digest_mail.review.check import require_no_errors
    from digest_mail.schedule.approval import approval_state

    resumed = run.state != "claimed"
    edition = run.edition or ""
    try:
        draft = load_draft(workspace, edition)
        state = approval_state(workspace, ledger, draft)
        if not state.ok:
            raise DigestMailError(state.describe())
        # The sample identity is the settings' fault, not the draft's: say that first.
        refuse_sample_identity(workspace)
        # A scheduled send has no --force: a draft that check fails waits for the editor.
        require_no_errors(
            draft, how_to_override=" and approve it again", settings=workspace.settings
        )
        update_run(ledger, schedule.name, slot, state="sending", note="sending")
        report = run_campaign(workspace, draft, schedule.list_names)
    except CampaignInterrupted:
        # SIGTERM/Ctrl-C: the slot stays 'sending' and the next run resumes it.
        update_run(ledger, schedule.name, slot, state="sending", note="interrupted; resumes")
        raise
    except Exception as exc:
        message = str(exc)
        if isinstance(exc, DigestMailError) and exc.hint:
            message += f" ({exc.hint})"
        update_run(
            ledger,
            schedule.name,
            slot,
            state="failed",
            note=f"failed: {message}",
            finished=datetime.now(UTC),
        )
        retry = (
            f"run-due retries until {slot_key(slot + schedule.late_after)}"
            if now - slot <= schedule.late_after
            else "past late_after: not retried"
        )
        return outcome(
            "failed",
            "failed",
            f"{edition} to {schedule.list_name} failed: {message}; {retry}",
            edition=edition,
            status=exc.exit_code if isinstance(exc, DigestMailError) else EXIT_ERROR,
        )
    summary = f"{report.summary()} of {report.total} ({report.sent_this_run} this run)"
    if report.exit_code == EXIT_INCOMPLETE:
        # Readers are still queued or deferred: the slot stays 'sending', so the next
        # run-due (or the daemon's retry) resumes the campaign instead of calling it sent.
        summary += "; the next run-due resumes it"
        update_run(
            ledger,
            schedule.name,
            slot,
            state="sending",
            note=summary,
            campaign_id=report.campaign_id,
        )
        return outcome(
            "incomplete",
            "sending",
            f"{edition} to {schedule.list_name} is not finished: {summary}",
            edition=edition,
            campaign_id=report.campaign_id,
            report=report.as_dict(),
            status=EXIT_INCOMPLETE,
        )
    if not report.complete:
        # Only rows a crashed run left uncertain remain: resending them is the operator's
        # explicit choice, which no later run-due can make.
        summary += f"; {report.stopped or 'incomplete'}: rerun '{report.resume_command()}'"
        if report.uncertain:
            summary += " --resend-uncertain to send those again"
    else:
        from digest_mail.render.archive import publish_after_campaign

        # The mail went out; a failed archive page must not turn the run into a failure.
        try:
            publish_after_campaign(workspace, draft, report)
        except (DigestMailError, OSError) as exc:
            summary += f"; archive not published: {exc} (run 'digest-mail archive {edition}')"
    update_run(
        ledger,
        schedule.name,
        slot,
        state="sent",
        note=summary,
        campaign_id=report.campaign_id,
        finished=datetime.now(UTC),
    )
    verb = "resumed and sent" if resumed else "sent"
    return outcome(
        "sent",
        "sent",
        f"{verb} {edition} to {schedule.list_name}: {summary}",
        edition=edition,
        campaign_id=report.campaign_id,
        report=report.as_dict(),
        status=report.exit_code,
    )


def _human(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes or not parts:
        parts.append(f"{minutes}m")
    return " ".join(parts)
