"""Slots: when each schedule is due, from its cron expression in its own time zone.

Slots are computed in the schedule's local zone (so "08:00 on Monday" stays 08:00
across DST changes) and handled in UTC. A wall-clock time that occurs twice when
clocks go back runs once, at its first occurrence, unless the cron hour field is ``*``
(hourly jobs run every elapsed hour); a time skipped when clocks go forward runs right
after the jump (croniter's behaviour).

The settings are checked by :func:`digest_mail.config.check_schedules`; a
:class:`Schedule` is that checked value with its slot arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime

from croniter import croniter

from digest_mail.config import CheckedSchedule, Workspace, check_schedules
from digest_mail.errors import ConfigError, DigestMailError

__all__ = ["Schedule", "load_schedules", "next_due", "parse_now", "require_schedules"]


class Schedule(CheckedSchedule):
    """A checked ``[[schedule]]`` and the slots it makes."""

    @classmethod
    def of(cls, checked: CheckedSchedule) -> Schedule:
        return cls(**{f.name: getattr(checked, f.name) for f in fields(checked)})

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
        it = croniter(self.cron, aware(moment).astimezone(self.zone))
        last = aware(moment)
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
        now = aware(now)
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


def aware(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is a programming error, not a local time."""
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


def load_schedules(workspace: Workspace) -> tuple[Schedule, ...]:
    """The workspace's schedules, checked (errors name the schedule and the field)."""
    return tuple(Schedule.of(checked) for checked in check_schedules(workspace))


def require_schedules(workspace: Workspace) -> tuple[Schedule, ...]:
    """:func:`load_schedules`, refusing a workspace that has none."""
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
