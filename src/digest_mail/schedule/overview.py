"""What the schedules will do: each one's next slots, the edition it would send, warnings.

``schedule list`` shows it (:func:`format_view`, or :meth:`ScheduleView.as_dict` for
``--json``), and ``approve`` ends with one line per schedule (:func:`next_sends`), so
that the editor sees at once what an approval (or its withdrawal) changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from digest_mail.config import Workspace
from digest_mail.errors import ConfigError
from digest_mail.ledger.db import open_ledger
from digest_mail.ledger.schedule_runs import ScheduleRun, list_runs, slot_key
from digest_mail.schedule.editions import EditionChoice, choose_edition
from digest_mail.schedule.slots import Schedule, aware, require_schedules

__all__ = ["ScheduleView", "format_view", "next_sends", "overview"]


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
                {"local": s.local(slot).isoformat(), "utc": slot_key(slot)} for slot in self.slots
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
    moment = aware(now) if now is not None else datetime.now(UTC)
    schedules = require_schedules(workspace)
    views = []
    with open_ledger(workspace) as ledger:
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
    from digest_mail.audience.csvfiles import has_readers_rows
    from digest_mail.audience.lists import existing_lists, similar_list

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
