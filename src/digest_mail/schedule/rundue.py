"""Scheduled sends: cron slots in a local zone, claimed once in the ledger, sent once.

Each ``[[schedule]]`` names a list, a five-field cron expression and an IANA zone. Slots
are computed in the local zone (so "08:00 on Monday" stays 08:00 across DST changes)
and stored in UTC. ``run_due`` looks only at the most recent slot at or before *now*:

* not yet recorded, and missed by more than ``late_after`` → recorded as skipped (late);
* not yet recorded, nothing approved → skipped, and the staff list gets a short notice;
* not yet recorded → claimed (one INSERT on PRIMARY KEY (schedule, slot) inside
  BEGIN IMMEDIATE: of two overlapping runs exactly one claims it), then the approved
  edition goes to the list through :func:`digest_mail.delivery.campaign.run_campaign`, the same
  path as ``send --yes``;
* claimed or sending, and no other process holds the slot's lock → the run that claimed
  it died: the campaign is resumed (run_campaign sends only what is not yet sent);
* failed (the relay was down, the list unreadable …) → retried by later runs until the
  slot is ``late_after`` old, then left failed;
* sent or skipped → nothing to do.

A wall-clock time that occurs twice when clocks go back runs once, at its first
occurrence, unless the cron hour field is ``*`` (hourly jobs run every elapsed hour); a
time skipped when clocks go forward runs right after the jump (croniter's behaviour).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError

from digest_mail.config import EDITION_ID, ScheduleSettings, Workspace, parse_duration
from digest_mail.errors import (
    EXIT_COMPLETE,
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    ConfigError,
    DigestMailError,
)
from digest_mail.ledger.approvals import list_approvals
from digest_mail.ledger.db import Ledger
from digest_mail.schedule.approval import ApprovalState, stored_state

if TYPE_CHECKING:
    from digest_mail.render.draft import Draft

__all__ = [
    "EditionChoice",
    "RunOutcome",
    "Schedule",
    "ScheduleRun",
    "ScheduleView",
    "choose_edition",
    "cron_line",
    "load_schedules",
    "next_due",
    "overview",
    "rehearse_due",
    "run_daemon",
    "run_due",
    "systemd_units",
]

_WEEKDAYS_JA = "月火水木金土日"
_FIELDS = "minute hour day-of-month month day-of-week"


# --- schedules and their slots -----------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A validated ``[[schedule]]``: what to send, to which list, when."""

    name: str
    list_name: str  # the campaign's name for its lists: 'weekly', or 'partners+weekly'
    cron: str
    zone: ZoneInfo
    edition: str
    late_after: timedelta
    late_after_text: str = "6h"
    lists: tuple[str, ...] = ()  # sorted; () means (list_name,)

    @property
    def list_names(self) -> tuple[str, ...]:
        return self.lists or (self.list_name,)

    @property
    def zone_name(self) -> str:
        return self.zone.key

    def _keeps_repeated_times(self) -> bool:
        return self.cron.split()[1] == "*"

    def _is_repeat(self, slot: datetime) -> bool:
        """True for the second occurrence of a wall-clock time when clocks go back."""
        local = slot.astimezone(self.zone)
        return (
            local.fold == 1
            and local.replace(fold=0).utcoffset() != local.utcoffset()
            and not self._keeps_repeated_times()
        )

    def slots_after(self, moment: datetime) -> Iterator[datetime]:
        """Slots strictly after ``moment``, in UTC, in order."""
        it = croniter(self.cron, _aware(moment).astimezone(self.zone))
        last = _aware(moment)
        while True:
            slot = it.get_next(datetime).astimezone(UTC)
            if slot <= last or self._is_repeat(slot):
                continue
            last = slot
            yield slot

    def next_slots(self, moment: datetime, count: int = 3) -> list[datetime]:
        slots = self.slots_after(moment)
        return [next(slots) for _ in range(count)]

    def latest_slot(self, now: datetime) -> datetime:
        """The most recent slot at or before ``now`` (UTC)."""
        now = _aware(now)
        it = croniter(self.cron, now.astimezone(self.zone))
        while True:
            previous = it.get_prev(datetime).astimezone(UTC)
            if not self._is_repeat(previous):
                break
        # croniter's get_prev is strict: a slot exactly at ``now`` is the next one.
        following = next(self.slots_after(previous))
        return following if following <= now else previous

    def local(self, slot: datetime) -> datetime:
        return slot.astimezone(self.zone)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one (UTC)")
    return moment.astimezone(UTC)


def parse_now(text: str) -> datetime:
    """``--now``: ISO 8601; a time without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise DigestMailError(
            f"--now {text!r} is not an ISO 8601 time", hint="e.g. --now 2026-11-30T08:00:00+09:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _validate(raw: ScheduleSettings, workspace: Workspace) -> Schedule:
    path = workspace.config_path
    label = f"schedule {raw.name!r}"

    def fail(key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, path=path, key=f"{label}.{key}", hint=hint)

    if not raw.name.strip():
        raise ConfigError("name is empty", path=path, key=f"{label}.name")
    lists = tuple(sorted(set(raw.list)))
    try:
        for name in lists:
            workspace.list_path(name)
    except ConfigError as exc:
        raise fail(
            "list",
            str(exc),
            'name a CSV under subscribers/ without .csv, e.g. list = "weekly" '
            '(several: list = ["weekly", "partners"])',
        ) from None
    cron = " ".join(raw.cron.split())
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise fail(
            "cron",
            f"{raw.cron!r} is not a five-field cron expression ({_FIELDS})",
            'e.g. cron = "0 8 * * MON" for Mondays at 08:00',
        )
    try:
        zone = ZoneInfo(raw.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(
            "timezone", f"{raw.timezone!r} is not an IANA time zone", 'e.g. timezone = "Asia/Tokyo"'
        ) from None
    try:
        seconds = parse_duration(raw.late_after, key="late_after")
    except ConfigError:
        raise fail(
            "late_after",
            f"{raw.late_after!r} is not a duration like 90s, 15m, 6h, 7d or 2w",
            'e.g. late_after = "6h"',
        ) from None
    if seconds <= 0:
        raise fail("late_after", "must be longer than 0", 'e.g. late_after = "6h"')
    edition = raw.edition.strip()
    if not EDITION_ID.fullmatch(edition):
        raise fail(
            "edition",
            f'{raw.edition!r} is neither "approved" nor an edition id',
            'use edition = "approved" (the newest approved draft) or an id like "2026-W48"',
        )
    schedule = Schedule(
        name=raw.name,
        list_name="+".join(lists),
        lists=lists,
        cron=cron,
        zone=zone,
        edition=edition,
        late_after=timedelta(seconds=seconds),
        late_after_text=raw.late_after,
    )
    try:
        schedule.next_slots(datetime.now(UTC), 1)
    except CroniterBadDateError:
        raise fail(
            "cron", f"{raw.cron!r} never matches a date", "check the day-of-month and month fields"
        ) from None
    return schedule


def load_schedules(workspace: Workspace) -> tuple[Schedule, ...]:
    """The workspace's schedules, validated (errors name the schedule and the field)."""
    schedules = tuple(_validate(raw, workspace) for raw in workspace.settings.schedules)
    seen: set[str] = set()
    for schedule in schedules:
        if schedule.name in seen:
            raise ConfigError(
                "two [[schedule]] tables have this name",
                path=workspace.config_path,
                key=f"schedule {schedule.name!r}.name",
                hint="give each schedule its own name",
            )
        seen.add(schedule.name)
    return schedules


def _require_schedules(workspace: Workspace) -> tuple[Schedule, ...]:
    schedules = load_schedules(workspace)
    if not schedules:
        where = workspace.config_path or workspace.root / "digest-mail.toml"
        raise ConfigError(
            f"{where} has no [[schedule]]",
            hint='add one: [[schedule]] name = "weekly", list = "weekly", cron = "0 8 * * MON"',
        )
    return schedules


def next_due(schedules: tuple[Schedule, ...], now: datetime) -> tuple[Schedule, datetime]:
    """The schedule whose next slot comes first after ``now``, and that slot."""
    return min(((s, next(s.slots_after(now))) for s in schedules), key=lambda pair: pair[1])


# --- which edition a schedule sends ------------------------------------------------------


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


def sent_editions(ledger: Ledger, lists: str | Sequence[str]) -> set[str]:
    """Editions these lists have received: for each list, a campaign of the edition that
    went to it (alone or with other lists) and finished.

    A campaign a scheduled run completed counts too, whatever state the campaign row
    was left in by an earlier, failed run. A campaign that never sent a message (older
    versions recorded an empty list's send as finished) does not count.
    """
    names = {lists} if isinstance(lists, str) else set(lists)
    rows = ledger.db.execute(
        "SELECT campaigns.edition, campaign_lists.list_name FROM campaigns"
        " JOIN campaign_lists ON campaign_lists.campaign_id = campaigns.id"
        " WHERE campaigns.kind = 'campaign'"
        " AND (campaigns.state = 'finished'"
        " OR campaigns.id IN (SELECT campaign_id FROM schedule_runs WHERE state = 'sent'))"
        " AND EXISTS (SELECT 1 FROM deliveries WHERE campaign_id = campaigns.id"
        " AND message_id != '')"
    )
    covered: dict[str, set[str]] = {}
    for edition, name in rows:
        covered.setdefault(edition, set()).add(name)
    return {edition for edition, got in covered.items() if names <= got}


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


# --- the ledger of slots ------------------------------------------------------------------

RunState = Literal["claimed", "sending", "sent", "skipped", "failed"]


@dataclass(frozen=True)
class ScheduleRun:
    """One row of ``schedule_runs``."""

    schedule: str
    slot: str
    state: RunState
    edition: str | None
    campaign_id: str | None
    claimed_at: str
    finished_at: str | None
    note: str


def _slot_key(slot: datetime) -> str:
    return slot.astimezone(UTC).isoformat(timespec="seconds")


def get_run(ledger: Ledger, schedule: str, slot: datetime) -> ScheduleRun | None:
    row = ledger.db.execute(
        "SELECT schedule, slot, state, edition, campaign_id, claimed_at, finished_at, note"
        " FROM schedule_runs WHERE schedule = ? AND slot = ?",
        (schedule, _slot_key(slot)),
    ).fetchone()
    return None if row is None else ScheduleRun(**dict(row))


def list_runs(ledger: Ledger, schedule: str | None = None) -> list[ScheduleRun]:
    query = (
        "SELECT schedule, slot, state, edition, campaign_id, claimed_at, finished_at, note"
        " FROM schedule_runs"
    )
    args: tuple[str, ...] = ()
    if schedule is not None:
        query += " WHERE schedule = ?"
        args = (schedule,)
    return [
        ScheduleRun(**dict(r)) for r in ledger.db.execute(query + " ORDER BY slot, schedule", args)
    ]


def claim_slot(
    ledger: Ledger,
    schedule: str,
    slot: datetime,
    *,
    state: RunState,
    edition: str | None,
    note: str,
    now: datetime,
) -> bool:
    """Record the slot if nobody has: True for exactly one of any number of callers."""
    stamp = now.astimezone(UTC).isoformat(timespec="seconds")
    finished = stamp if state == "skipped" else None
    with ledger.transaction() as db:
        cursor = db.execute(
            "INSERT INTO schedule_runs"
            " (schedule, slot, state, edition, claimed_at, finished_at, note)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (schedule, slot) DO NOTHING",
            (schedule, _slot_key(slot), state, edition, stamp, finished, note),
        )
        return cursor.rowcount == 1


def _update_run(
    ledger: Ledger,
    schedule: str,
    slot: datetime,
    *,
    state: RunState,
    note: str | None = None,
    campaign_id: str | None = None,
    finished: datetime | None = None,
) -> None:
    sets = ["state = ?"]
    args: list[Any] = [state]
    if note is not None:
        sets.append("note = ?")
        args.append(note)
    if campaign_id is not None:
        sets.append("campaign_id = ?")
        args.append(campaign_id)
    if finished is not None:
        sets.append("finished_at = ?")
        args.append(finished.astimezone(UTC).isoformat(timespec="seconds"))
    with ledger.transaction() as db:
        db.execute(
            f"UPDATE schedule_runs SET {', '.join(sets)} WHERE schedule = ? AND slot = ?",
            (*args, schedule, _slot_key(slot)),
        )


@contextmanager
def _slot_lock(workspace: Workspace, schedule: Schedule) -> Iterator[bool]:
    """An OS lock held while a process works on a schedule: it dies with the process.

    The ledger claim decides who sends a slot; this lock tells a slot whose sender died
    (claimed, lock free: resume it) from one being sent right now (lock held: leave it).
    """
    folder = workspace.var_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", schedule.name)
    handle = open(folder / f"schedule-{safe}.lock", "a+b")  # noqa: SIM115 - held across the yield
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


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
        when = f"{local:%Y-%m-%d %H:%M %Z} ({_slot_key(self.slot)})"
        text = f"{self.schedule}: {when}: {self.action}: {self.message}"
        if self.notice:
            text += f"; {self.notice}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "list": self.list_name,
            "slot": _slot_key(self.slot),
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
    moment = _aware(now) if now is not None else datetime.now(UTC)
    return [
        _run_schedule(workspace, schedule, moment) for schedule in _require_schedules(workspace)
    ]


def rehearse_due(workspace: Workspace, *, now: datetime | None = None) -> list[RunOutcome]:
    """What :func:`run_due` would do now, without doing it: no slot is claimed, nothing is
    sent, no staff notice goes out (``run-due --dry-run``, with ``--now`` to rehearse)."""
    from digest_mail.transport.smtp import describe_transport

    moment = _aware(now) if now is not None else datetime.now(UTC)
    schedules = _require_schedules(workspace)
    via = describe_transport(workspace)
    with Ledger(workspace.ledger_path) as ledger:
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
    slot = schedule.latest_slot(now)
    outcome = partial(_outcome, schedule, slot)
    with _slot_lock(workspace, schedule) as locked:
        if not locked:
            with Ledger(workspace.ledger_path) as ledger:
                run = get_run(ledger, schedule.name, slot)
            return outcome(
                "busy",
                run.state if run is not None else "unclaimed",
                "another digest-mail process is running this schedule now",
                edition=run.edition if run is not None else None,
            )
        with Ledger(workspace.ledger_path) as ledger:
            run = get_run(ledger, schedule.name, slot)
            if run is None:
                late = now - slot
                if late > schedule.late_after:
                    note = _late_note(ledger, schedule, slot, late)
                    if not claim_slot(
                        ledger,
                        schedule.name,
                        slot,
                        state="skipped",
                        edition=None,
                        note=note,
                        now=now,
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
                        ledger,
                        schedule.name,
                        slot,
                        state="skipped",
                        edition=None,
                        note=note,
                        now=now,
                    ):
                        return _recorded(outcome, get_run(ledger, schedule.name, slot))
                    notice = _notify_staff(workspace, ledger, schedule, slot, choice)
                    return outcome("skipped", "skipped", note, notice=notice)
                note = "claimed"
                if not claim_slot(
                    ledger,
                    schedule.name,
                    slot,
                    state="claimed",
                    edition=choice.draft.id,
                    note=note,
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
    from digest_mail.delivery.campaign import CampaignInterrupted, run_campaign
    from digest_mail.delivery.identity import refuse_sample_identity
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
        _update_run(ledger, schedule.name, slot, state="sending", note="sending")
        report = run_campaign(workspace, draft, schedule.list_names)
    except CampaignInterrupted:
        # SIGTERM/Ctrl-C: the slot stays 'sending' and the next run resumes it.
        _update_run(ledger, schedule.name, slot, state="sending", note="interrupted; resumes")
        raise
    except Exception as exc:
        message = str(exc)
        if isinstance(exc, DigestMailError) and exc.hint:
            message += f" ({exc.hint})"
        _update_run(
            ledger,
            schedule.name,
            slot,
            state="failed",
            note=f"failed: {message}",
            finished=datetime.now(UTC),
        )
        retry = (
            f"run-due retries until {_slot_key(slot + schedule.late_after)}"
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
        _update_run(
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
    _update_run(
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


# --- the staff notice ---------------------------------------------------------------------


def _staff_addresses(workspace: Workspace) -> list[str]:
    from digest_mail.audience.lists import Recipient, scan_list

    path = workspace.list_path(workspace.settings.lists.staff)
    if not path.is_file():
        return []
    return [
        item.email
        for item in scan_list(path)
        if isinstance(item, Recipient) and item.status != "unsubscribed"
    ]


def _ja_time(moment: datetime) -> str:
    return (
        f"{moment:%Y年%m月%d日}({_WEEKDAYS_JA[moment.weekday()]}) {moment:%H:%M} {moment.tzname()}"
    )


def build_notice(
    workspace: Workspace,
    schedule: Schedule,
    slot: datetime,
    choice: EditionChoice,
    recipients: list[str],
) -> EmailMessage:
    """The short Japanese notice to staff that a slot went out empty, and how to fix it."""
    settings = workspace.settings
    sender_name, sender_address = parseaddr(settings.newsletter.sender)
    local = schedule.local(slot)
    following = schedule.local(next(schedule.slots_after(slot)))
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = Address(display_name=sender_name, addr_spec=sender_address)
    message["To"] = ", ".join(recipients)
    message["Subject"] = (
        f"[digest-mail] 配信スケジュール「{schedule.name}」:"
        " 承認済みの号がないため送信しませんでした"
    )
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=sender_address.rpartition("@")[2] or None)
    message["Auto-Submitted"] = "auto-generated"
    lines = [
        "スタッフ各位",
        "",
        f"配信スケジュール「{schedule.name}」(リスト {schedule.list_name})の",
        f"{_ja_time(local)} の配信枠で、送信できる承認済みの号がありませんでした。",
        "購読者には何も送信していません。",
        "",
        f"理由: {choice.reason_ja or choice.reason}",
        "",
        "号を確認して承認し、手動で送信してください:",
        "  digest-mail approve <号>   (例: 2026-W48)",
        "  digest-mail send <号> " + " ".join(f"--list {n}" for n in schedule.list_names),
        "",
        f"次の配信枠: {_ja_time(following)}",
        "",
        "-- ",
        f"digest-mail ({settings.newsletter.name})",
    ]
    message.set_content("\n".join(lines) + "\n", cte="8bit")
    return message


def _notify_staff(
    workspace: Workspace, ledger: Ledger, schedule: Schedule, slot: datetime, choice: EditionChoice
) -> str:
    staff = workspace.settings.lists.staff
    try:
        recipients = _staff_addresses(workspace)
    except DigestMailError as exc:
        return f"staff not notified: {exc}"
    if not recipients:
        return f"staff not notified: list {staff!r} has no addresses"
    message = build_notice(workspace, schedule, slot, choice, recipients)
    envelope_from = parseaddr(workspace.settings.newsletter.sender)[1]
    try:
        asyncio.run(
            _deliver(workspace, envelope_from, recipients, message.as_bytes(policy=policy.SMTP))
        )
    except Exception as exc:
        note = f"staff not notified: {exc}"
    else:
        note = f"notice sent to staff ({len(recipients)})"
    _update_run(
        ledger,
        schedule.name,
        slot,
        state="skipped",
        note=f"{_current_note(ledger, schedule, slot)}; {note}",
    )
    return note


def _current_note(ledger: Ledger, schedule: Schedule, slot: datetime) -> str:
    run = get_run(ledger, schedule.name, slot)
    return run.note if run is not None else ""


async def _deliver(
    workspace: Workspace, envelope_from: str, recipients: list[str], data: bytes
) -> None:
    from digest_mail.delivery.identity import refuse_sample_identity
    from digest_mail.transport.smtp import open_transport

    refuse_sample_identity(workspace)
    transport = open_transport(workspace)
    try:
        await transport.send(envelope_from, recipients, data)
    finally:
        await transport.close()


# --- what the schedules will do --------------------------------------------------------


@dataclass(frozen=True)
class ScheduleView:
    """``schedule list``: a schedule, its next runs, and what the next run would send."""

    schedule: Schedule
    slots: tuple[datetime, ...]
    choice: EditionChoice
    last_run: ScheduleRun | None
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        s = self.schedule
        return {
            "name": s.name,
            "list": s.list_name,
            "cron": s.cron,
            "timezone": s.zone_name,
            "edition_rule": s.edition,
            "late_after": s.late_after_text,
            "next_runs": [
                {"local": s.local(slot).isoformat(), "utc": _slot_key(slot)} for slot in self.slots
            ],
            "edition": self.choice.edition,
            "reason": self.choice.reason,
            "last_run": None if self.last_run is None else dict(vars(self.last_run)),
            "warnings": list(self.warnings),
        }


def overview(
    workspace: Workspace, *, now: datetime | None = None, count: int = 3
) -> list[ScheduleView]:
    """Each schedule's next ``count`` slots and the edition its next slot would send."""
    moment = _aware(now) if now is not None else datetime.now(UTC)
    schedules = _require_schedules(workspace)
    views = []
    with Ledger(workspace.ledger_path) as ledger:
        for schedule in schedules:
            runs = list_runs(ledger, schedule.name)
            views.append(
                ScheduleView(
                    schedule=schedule,
                    slots=tuple(schedule.next_slots(moment, count)),
                    choice=choose_edition(workspace, ledger, schedule),
                    last_run=runs[-1] if runs else None,
                    warnings=_audience_warnings(workspace, schedule),
                )
            )
    return views


def _audience_warnings(workspace: Workspace, schedule: Schedule) -> tuple[str, ...]:
    """What will make the next run fail for want of readers: a list that does not exist,
    or lists with no rows at all (the empty list init writes). Cheap: reads up to the
    first row of each list."""
    from digest_mail.audience.lists import existing_lists, has_readers_rows, similar_list

    missing = [n for n in schedule.list_names if not workspace.list_path(n).is_file()]
    warnings = []
    for name in missing:
        near = similar_list(name, existing_lists(workspace))
        fix = f"did you mean {near!r}?" if near else f"'digest-mail subscribers add {name} ADDRESS'"
        warnings.append(f"there is no list {name!r}: the run will fail ({fix})")
    if not missing and not any(
        has_readers_rows(workspace.list_path(n)) for n in schedule.list_names
    ):
        which = " and ".join(schedule.list_names)
        warnings.append(
            f"{which} has no readers yet: the run will fail until you add some "
            f"('digest-mail subscribers add {schedule.list_names[0]} ADDRESS')"
        )
    return tuple(warnings)


def next_sends(workspace: Workspace, *, now: datetime | None = None) -> list[str]:
    """One line per schedule: its next run and what it would send (shown by approve)."""
    if not workspace.settings.schedules:
        return []
    try:
        views = overview(workspace, now=now, count=1)
    except ConfigError as exc:
        return [f"Schedules: {exc}"]
    lines = []
    for view in views:
        s, slot = view.schedule, view.slots[0]
        when = f"{s.local(slot):%Y-%m-%d %H:%M %Z} ({slot:%Y-%m-%d %H:%M} UTC)"
        if view.choice.edition:
            what = f"sends {view.choice.edition} to {s.list_name}"
        else:
            what = f"sends nothing: {view.choice.reason}"
        lines.append(f"Schedule {s.name}: next run {when} {what}.")
    return lines


def format_view(view: ScheduleView) -> list[str]:
    """Lines for ``schedule list``."""
    s = view.schedule
    lines = [
        f"{s.name}: list {s.list_name}, cron {s.cron!r} in {s.zone_name},"
        f" late after {s.late_after_text}"
    ]
    for index, slot in enumerate(view.slots):
        local = s.local(slot)
        when = f"  {local:%Y-%m-%d %a %H:%M %Z} = {slot:%Y-%m-%d %H:%M} UTC"
        if index == 0:
            what = (
                f"sends {view.choice.edition}"
                if view.choice.edition
                else f"sends nothing: {view.choice.reason}"
            )
        elif view.choice.edition:
            what = f"sends an edition approved after {view.choice.edition}"
        else:
            what = "sends the newest approved edition then"
        lines.append(f"{when}  {what}")
    if view.last_run is not None:
        run = view.last_run
        lines.append(f"  last run: {run.slot} {run.state}" + (f" ({run.note})" if run.note else ""))
    lines.extend(f"  warning: {warning}" for warning in view.warnings)
    return lines


# --- the daemon ---------------------------------------------------------------------------


def run_daemon(
    workspace: Workspace,
    *,
    clock: Callable[[], datetime],
    wait: Callable[[float], bool],
    log: Callable[[str], None],
    max_wait: float = 3600.0,
    retry_every: float = 300.0,
    after_run: Callable[[], None] | None = None,
) -> None:
    """Run what is due, sleep until the next slot, repeat; return when ``wait`` says stop.

    ``wait(seconds)`` sleeps and returns True when the daemon should stop (a signal).
    Waits are capped at ``max_wait`` so a suspended machine or a changed clock is noticed.
    A failed run is logged and the loop carries on; a failed or busy slot is tried again
    after ``retry_every`` seconds (run-due itself stops retrying once past late_after).
    ``after_run`` is called after every run (the CLI takes its signal handlers back).
    """
    from digest_mail.delivery.campaign import CampaignInterrupted

    schedules = _require_schedules(workspace)
    while True:
        now = clock()
        retry = False
        try:
            for item in run_due(workspace, now=now):
                log(item.line())
                retry = retry or item.action in ("failed", "busy", "incomplete")
        except CampaignInterrupted as exc:
            # The campaign took the signal meant for us: stop, the slot resumes next time.
            log(f"stopping: {exc}")
            return
        except Exception as exc:
            log(f"run failed: {exc}")
            retry = True
        finally:
            if after_run is not None:
                after_run()
        now = clock()
        schedule, target = next_due(schedules, now)
        if retry and now + timedelta(seconds=retry_every) < target:
            target = now + timedelta(seconds=retry_every)
            log(f"retrying at {_slot_key(target)}")
        else:
            log(
                f"next: {schedule.name} at {schedule.local(target):%Y-%m-%d %H:%M %Z}"
                f" ({_slot_key(target)})"
            )
        while (remaining := (target - clock()).total_seconds()) > 0:
            if wait(min(remaining, max_wait)):
                log("stopping")
                return


# --- installing a timer ----------------------------------------------------------------


def executable() -> str:
    """The absolute path of the digest-mail command running now."""
    beside = Path(sys.executable).parent / "digest-mail"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside.absolute())
    argv0 = Path(sys.argv[0])
    if argv0.name == "digest-mail" and argv0.exists():
        return str(argv0.absolute())
    return f"{Path(sys.executable).absolute()} -m digest_mail"


def systemd_units(workspace: Workspace, *, command: str | None = None) -> str:
    """A systemd service + timer pair that runs ``schedule run-due`` every minute."""
    _require_schedules(workspace)
    command = command or executable()
    root = workspace.root
    unit = "digest-mail-schedule"
    names = ", ".join(s.name for s in load_schedules(workspace))
    return f"""\
# ~/.config/systemd/user/{unit}.service  (or /etc/systemd/system/ with User=)
[Unit]
Description=digest-mail scheduled sends ({names}) of {root}
After=network-online.target
Wants=network-online.target

[Service]
Type=oneshot
WorkingDirectory={root}
ExecStart={command} schedule run-due
# Secrets (DIGEST_MAIL_SMTP_PASSWORD, DIGEST_MAIL_SECRET) from an owner-only file:
# EnvironmentFile=%h/.config/digest-mail.env

# ~/.config/systemd/user/{unit}.timer
[Unit]
Description=Run digest-mail schedule run-due every minute ({root})

[Timer]
# Every minute: run-due is idempotent, so a missed slot is caught within late_after and
# an interrupted send resumes within a minute. The cron times and zones live in
# digest-mail.toml, not here.
OnCalendar=minutely
AccuracySec=1s

[Install]
WantedBy=timers.target

# Then: systemctl --user daemon-reload && systemctl --user enable --now {unit}.timer
"""


def cron_line(workspace: Workspace, *, command: str | None = None) -> str:
    """A crontab line that runs ``schedule run-due`` every minute from this workspace."""
    _require_schedules(workspace)
    command = command or executable()
    root = workspace.root
    log = root / "var" / "schedule.log"
    return (
        "# digest-mail: run due scheduled sends every minute"
        " (times and zones are in digest-mail.toml)\n"
        "# cron starts with a bare environment: secrets come from owner-only files named in the"
        " settings, or a DIGEST_MAIL_SMTP_PASSWORD=... line above this one\n"
        # The shell opens the log before the command runs: in a fresh workspace var/
        # does not exist yet and run-due would never start (and say nothing).
        f"* * * * * cd {shlex.quote(str(root))} && mkdir -p var && {command} schedule run-due"
        f" >> {shlex.quote(str(log))} 2>&1\n"
    )
