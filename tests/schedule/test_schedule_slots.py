"""Schedule slots: cron in a local zone, stored in UTC; DST; validation names schedule and field."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from digest_mail.schedule.slots import load_schedules
from schedule_helpers import set_schedules, weekly, workspace_of


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def slots(root: Path, now: datetime, count: int = 3) -> list[str]:
    (schedule,) = load_schedules(workspace_of(root))
    return [s.isoformat() for s in schedule.next_slots(now, count)]


def test_list_shows_next_runs_across_a_month_boundary_in_tokyo_and_utc(
    workspace: Path, run
) -> None:
    set_schedules(workspace, weekly() + "\n" + weekly(name="utc-weekly", timezone="UTC"))
    result = run("schedule", "list", "--now", "2026-11-25T21:00:00Z")
    assert result.exit_code == 0, result.output
    # Monday 08:00 in Tokyo is Sunday 23:00 UTC; the third run is in December.
    assert result.output == (
        "weekly: list weekly, cron '0 8 * * MON' in Asia/Tokyo, late after 6h\n"
        "  2026-11-30 Mon 08:00 JST = 2026-11-29 23:00 UTC"
        "  sends nothing: no approved edition\n"
        "  2026-12-07 Mon 08:00 JST = 2026-12-06 23:00 UTC"
        "  sends the newest approved edition then\n"
        "  2026-12-14 Mon 08:00 JST = 2026-12-13 23:00 UTC"
        "  sends the newest approved edition then\n"
        "utc-weekly: list weekly, cron '0 8 * * MON' in UTC, late after 6h\n"
        "  2026-11-30 Mon 08:00 UTC = 2026-11-30 08:00 UTC"
        "  sends nothing: no approved edition\n"
        "  2026-12-07 Mon 08:00 UTC = 2026-12-07 08:00 UTC"
        "  sends the newest approved edition then\n"
        "  2026-12-14 Mon 08:00 UTC = 2026-12-14 08:00 UTC"
        "  sends the newest approved edition then\n"
    )


def test_month_end_schedule_crosses_into_the_next_month(workspace: Path) -> None:
    set_schedules(workspace, weekly(cron="0 9 28-31 * *"))
    # 09:00 in Tokyo is 00:00 UTC the same day; November has 30 days.
    assert slots(workspace, utc(2026, 11, 28, 12, 0)) == [
        "2026-11-29T00:00:00+00:00",
        "2026-11-30T00:00:00+00:00",
        "2026-12-28T00:00:00+00:00",
    ]


def test_list_json_has_local_and_utc_times(workspace: Path, run) -> None:
    import json

    set_schedules(workspace, weekly())
    result = run("schedule", "list", "--now", "2026-11-29T23:00:00Z", "--json")
    (view,) = json.loads(result.output)
    # A slot exactly at --now is due, not next: the next one is a week later.
    assert view["next_runs"][0] == {
        "local": "2026-12-07T08:00:00+09:00",
        "utc": "2026-12-06T23:00:00+00:00",
    }
    assert view["edition"] is None and view["reason"] == "no approved edition"


def test_berlin_weekly_slot_keeps_local_time_across_the_spring_change(workspace: Path) -> None:
    set_schedules(workspace, weekly(cron="0 8 * * SUN", timezone="Europe/Berlin"))
    # 29 March 2026: clocks go 02:00 CET -> 03:00 CEST. 08:00 local moves from 07:00 to 06:00 UTC.
    assert slots(workspace, utc(2026, 3, 21)) == [
        "2026-03-22T07:00:00+00:00",
        "2026-03-29T06:00:00+00:00",
        "2026-04-05T06:00:00+00:00",
    ]


def test_berlin_weekly_slot_keeps_local_time_across_the_autumn_change(workspace: Path) -> None:
    set_schedules(workspace, weekly(cron="0 8 * * SUN", timezone="Europe/Berlin"))
    assert slots(workspace, utc(2026, 10, 17)) == [
        "2026-10-18T06:00:00+00:00",
        "2026-10-25T07:00:00+00:00",
        "2026-11-01T07:00:00+00:00",
    ]


def test_berlin_time_in_the_repeated_hour_runs_once(workspace: Path) -> None:
    set_schedules(workspace, weekly(cron="30 2 * * *", timezone="Europe/Berlin"))
    # 25 October 2026: 02:30 happens twice (CEST, then CET). It runs at the first only.
    assert slots(workspace, utc(2026, 10, 24, 12), 2) == [
        "2026-10-25T00:30:00+00:00",
        "2026-10-26T01:30:00+00:00",
    ]
    (schedule,) = load_schedules(workspace_of(workspace))
    # At 02:40 CET (the second 02:40) the due slot is still the first 02:30.
    assert schedule.latest_slot(utc(2026, 10, 25, 1, 40)).isoformat() == "2026-10-25T00:30:00+00:00"


def test_berlin_time_in_the_skipped_hour_runs_right_after_the_jump(workspace: Path) -> None:
    set_schedules(workspace, weekly(cron="30 2 * * *", timezone="Europe/Berlin"))
    # 29 March 2026 has no 02:30; the run happens at 03:00 CEST, once.
    assert slots(workspace, utc(2026, 3, 28, 12), 2) == [
        "2026-03-29T01:00:00+00:00",
        "2026-03-30T00:30:00+00:00",
    ]


def test_hourly_schedule_runs_every_elapsed_hour_when_clocks_go_back(workspace: Path) -> None:
    set_schedules(workspace, weekly(cron="0 * * * *", timezone="Europe/Berlin"))
    assert slots(workspace, utc(2026, 10, 24, 23, 30), 4) == [
        "2026-10-25T00:00:00+00:00",  # 02:00 CEST
        "2026-10-25T01:00:00+00:00",  # 02:00 CET
        "2026-10-25T02:00:00+00:00",  # 03:00 CET
        "2026-10-25T03:00:00+00:00",
    ]


def test_latest_slot_at_and_after_the_slot(workspace: Path) -> None:
    set_schedules(workspace, weekly())
    (schedule,) = load_schedules(workspace_of(workspace))
    exact = utc(2026, 11, 29, 23, 0)
    assert schedule.latest_slot(exact) == exact
    assert schedule.latest_slot(utc(2026, 11, 29, 23, 0, 1)) == exact
    assert schedule.latest_slot(utc(2026, 11, 29, 22, 59, 59)) == utc(2026, 11, 22, 23, 0)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            weekly(cron="0 25 * * MON"),
            "Error: {path}: schedule 'weekly'.cron: '0 25 * * MON' is not a five-field cron "
            "expression (minute hour day-of-month month day-of-week)\n"
            'Hint: e.g. cron = "0 8 * * MON" for Mondays at 08:00\n',
        ),
        (
            weekly(cron="0 0 8 * * MON"),
            "Error: {path}: schedule 'weekly'.cron: '0 0 8 * * MON' is not a five-field cron "
            "expression (minute hour day-of-month month day-of-week)\n"
            'Hint: e.g. cron = "0 8 * * MON" for Mondays at 08:00\n',
        ),
        (
            weekly(timezone="Asia/Tokio"),
            "Error: {path}: schedule 'weekly'.timezone: 'Asia/Tokio' is not an IANA time zone\n"
            'Hint: e.g. timezone = "Asia/Tokyo"\n',
        ),
        (
            weekly(late_after="six hours"),
            "Error: {path}: schedule 'weekly'.late_after: 'six hours' is not a duration like "
            "90s, 15m, 6h, 7d or 2w\n"
            'Hint: e.g. late_after = "6h"\n',
        ),
        (
            weekly(late_after="0h"),
            "Error: {path}: schedule 'weekly'.late_after: must be longer than 0\n"
            'Hint: e.g. late_after = "6h"\n',
        ),
        (
            weekly(edition="drafts/2026-W48"),
            "Error: {path}: schedule 'weekly'.edition: 'drafts/2026-W48' is neither "
            '"approved" nor an edition id\n'
            'Hint: use edition = "approved" (the newest approved draft) or an id like '
            '"2026-W48"\n',
        ),
        (
            weekly(cron="0 8 30 2 *"),
            "Error: {path}: schedule 'weekly'.cron: '0 8 30 2 *' never matches a date\n"
            "Hint: check the day-of-month and month fields\n",
        ),
        (
            weekly() + weekly(list_name="staff"),
            "Error: {path}: schedule 'weekly'.name: two [[schedule]] tables have this name\n"
            "Hint: give each schedule its own name\n",
        ),
    ],
)
def test_bad_schedule_names_schedule_and_field(
    workspace: Path, run, block: str, expected: str
) -> None:
    set_schedules(workspace, block)
    result = run("schedule", "list", "--now", "2026-11-25T21:00:00Z")
    assert result.exit_code == 1
    assert result.output == expected.format(path=workspace / "digest-mail.toml")


def test_bad_now_is_one_line(workspace: Path, run) -> None:
    result = run("schedule", "run-due", "--now", "next monday")
    assert result.exit_code == 1
    assert result.output == (
        "Error: --now 'next monday' is not an ISO 8601 time\n"
        "Hint: e.g. --now 2026-11-30T08:00:00+09:00\n"
    )


def test_no_schedule_says_how_to_add_one(workspace: Path, run) -> None:
    path = workspace / "digest-mail.toml"
    path.write_text(path.read_text(encoding="utf-8").split("[[schedule]]")[0], encoding="utf-8")
    result = run("schedule", "list")
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {path} has no [[schedule]]\nHint: add one:")
