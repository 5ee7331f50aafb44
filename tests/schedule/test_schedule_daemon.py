"""schedule daemon (injected clock and sleep; a real process for SIGTERM) and install."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from digest_mail.ledger.schedule_runs import list_runs
from digest_mail.schedule.timers import run_daemon
from ledger_rows import child_env, workspace_ledger
from schedule_helpers import compose_draft, outbox_messages, set_schedules, weekly, workspace_of

SLOT = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)  # Monday 08:00 in Tokyo


def test_daemon_survives_a_failed_run_retries_and_sleeps_until_the_next_slot(
    workspace: Path, run
) -> None:
    set_schedules(workspace, weekly())
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    assert run("approve", "2026-W48").exit_code == 0
    # The list is missing when the slot comes: the run fails and the daemon carries on.
    weekly_csv = workspace / "subscribers" / "weekly.csv"
    kept = weekly_csv.read_bytes()
    weekly_csv.unlink()

    now = [SLOT + timedelta(minutes=1)]
    waits: list[float] = []
    lines: list[str] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        if len(waits) == 1:
            weekly_csv.write_bytes(kept)  # an editor restores the list meanwhile
        if len(waits) == 2:
            return True  # SIGTERM while sleeping towards next week's slot
        now[0] += timedelta(seconds=seconds)
        return False

    run_daemon(workspace_of(workspace), clock=lambda: now[0], wait=wait, log=lines.append)

    assert lines[0].startswith(
        "weekly: 2026-11-30 08:00 JST (2026-11-29T23:00:00+00:00): failed:"
        " 2026-W48 to weekly failed:"
    )
    assert lines[0].endswith("; run-due retries until 2026-11-30T05:00:00+00:00")
    assert lines[1] == "retrying at 2026-11-29T23:06:00+00:00"
    assert lines[2].startswith(
        "weekly: 2026-11-30 08:00 JST (2026-11-29T23:00:00+00:00): sent: "
        "resumed and sent 2026-W48 to weekly: 31 sent,"
    )
    assert lines[3] == "next: weekly at 2026-12-07 08:00 JST (2026-12-06T23:00:00+00:00)"
    assert lines[4:] == ["stopping"]
    assert waits == [300.0, 3600.0]
    assert len(outbox_messages(workspace)) == 31
    with workspace_ledger(workspace) as ledger:
        assert [(r.slot, r.state) for r in list_runs(ledger)] == [
            ("2026-11-29T23:00:00+00:00", "sent")
        ]


def test_daemon_runs_each_slot_as_it_comes(workspace: Path, run) -> None:
    set_schedules(workspace, weekly(cron="0 8 * * *"))
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    run("approve", "2026-W48")
    now = [SLOT - timedelta(hours=2)]
    lines: list[str] = []

    def wait(seconds: float) -> bool:
        now[0] += timedelta(seconds=seconds)
        return now[0] > SLOT + timedelta(days=1, hours=1)

    run_daemon(workspace_of(workspace), clock=lambda: now[0], wait=wait, log=lines.append)
    outcomes = [line.split(": ", 3)[2] for line in lines if line.startswith("weekly: ")]
    # Yesterday's slot is long past (skipped late), today's sends, tomorrow's finds it sent.
    assert outcomes == ["skipped", "sent", "skipped"]
    assert len([m for m in outbox_messages(workspace) if "W48" in m["Subject"]]) == 31


def test_daemon_stops_cleanly_on_sigterm_after_a_send(workspace: Path, run) -> None:
    # Every minute, so the slot just past is due when the real daemon starts: it sends,
    # then sleeps; SIGTERM must still reach it after the campaign had the signals.
    set_schedules(workspace, weekly(cron="* * * * *", late_after="1h"))
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    assert run("approve", "2026-W48").exit_code == 0
    env = child_env()
    process = subprocess.Popen(
        [sys.executable, "-m", "digest_mail", "schedule", "daemon"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if " next: weekly at " in line:
            break
    process.send_signal(signal.SIGTERM)
    rest, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert seen[0].split(" ", 1)[1].startswith("digest-mail schedule daemon started in ")
    assert ": sent: sent 2026-W48 to weekly: 31 sent," in seen[1]
    assert rest.splitlines()[-1].endswith(" stopping")
    assert errors == ""


def test_install_systemd_prints_service_and_timer(workspace: Path, run) -> None:
    result = run("schedule", "install", "--systemd")
    assert result.exit_code == 0
    text = result.output
    executable = Path(sys.executable).parent / "digest-mail"
    assert f"WorkingDirectory={workspace}\n" in text
    assert f"ExecStart={executable} schedule run-due\n" in text
    assert Path(text.split("ExecStart=", 1)[1].split()[0]).is_absolute()
    assert "[Timer]\n" in text and "OnCalendar=minutely\n" in text
    assert "WantedBy=timers.target\n" in text
    assert "# ~/.config/systemd/user/digest-mail-schedule.service" in text
    assert "# ~/.config/systemd/user/digest-mail-schedule.timer" in text
    analyze = shutil.which("systemd-analyze")
    if analyze:  # where systemd is installed, let it check both units
        service, timer = text.split("# ~/.config/systemd/user/digest-mail-schedule.timer")
        units = workspace / "units"
        units.mkdir()
        (units / "digest-mail-schedule.service").write_text(service, encoding="utf-8")
        (units / "digest-mail-schedule.timer").write_text(timer, encoding="utf-8")
        check = subprocess.run(
            [
                analyze,
                "verify",
                "--man=no",
                "digest-mail-schedule.service",
                "digest-mail-schedule.timer",
            ],
            capture_output=True,
            text=True,
            cwd=units,
        )
        assert check.returncode == 0, check.stderr


def test_install_cron_prints_a_crontab_line(workspace: Path, run) -> None:
    result = run("schedule", "install", "--cron")
    assert result.exit_code == 0
    executable = Path(sys.executable).parent / "digest-mail"
    (line,) = [x for x in result.output.splitlines() if not x.startswith("#")]
    assert line == (
        f"* * * * * cd {workspace} && mkdir -p var && {executable} schedule run-due"
        f" >> {workspace / 'var' / 'schedule.log'} 2>&1"
    )


def test_the_crontab_line_works_in_a_fresh_workspace(workspace: Path, run) -> None:
    # The editor's trap: var/ does not exist yet, the shell could not open the log and
    # run-due never started, silently. Run the line as cron would: sh, a bare environment.
    assert not (workspace / "var").exists()
    result = run("schedule", "install", "--cron")
    (line,) = [x for x in result.output.splitlines() if not x.startswith("#")]
    command = line.split(" ", 5)[5]
    done = subprocess.run(
        ["sh", "-c", command],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": str(workspace)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    log = (workspace / "var" / "schedule.log").read_text(encoding="utf-8")
    assert log.startswith("weekly: "), log


def test_install_prints_the_systemd_units_by_default(workspace: Path, run) -> None:
    default = run("schedule", "install")
    assert default.exit_code == 0
    assert default.output == run("schedule", "install", "--systemd").output
    assert "[Timer]\n" in default.output


def test_install_with_both_kinds_prints_both_and_says_to_pick_one(workspace: Path, run) -> None:
    systemd = run("schedule", "install", "--systemd").output
    cron = run("schedule", "install", "--cron").output
    both = run("schedule", "install", "--cron", "--systemd")
    assert both.exit_code == 0
    assert both.output == (
        "# Both kinds, as asked: install ONE of them, or every slot runs twice.\n\n"
        f"{systemd}\n{cron}"
    )


def test_sigterm_during_a_scheduled_send_stops_the_daemon_and_the_slot_resumes(
    workspace: Path, run, monkeypatch
) -> None:
    import threading

    from smtpserver import SmtpServer

    set_schedules(workspace, weekly(cron="* * * * *", late_after="1h"))
    compose_draft(workspace, "2026-W48", title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    assert run("approve", "2026-W48").exit_code == 0
    server = SmtpServer().start()
    stalled, release = threading.Event(), threading.Event()
    seen = [0]

    def data_reply(envelope: object) -> str | None:
        seen[0] += 1
        if seen[0] <= 3:
            return None
        stalled.set()
        release.wait(60)
        return "451 4.3.0 try again later"

    server.handler.data_reply = data_reply
    env = child_env()
    env.update(DIGEST_MAIL_SMTP_URL=server.url, DIGEST_MAIL_SMTP_CONCURRENCY="1")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "digest_mail", "schedule", "daemon"],
            cwd=workspace,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert stalled.wait(60)
        process.send_signal(signal.SIGTERM)  # mid-send: in-flight finishes, the rest waits
        release.set()
        out, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors
        assert out.splitlines()[-1].split(" ", 1)[1].startswith("stopping: interrupted")
        with workspace_ledger(workspace) as ledger:
            ((slot_time, state, note),) = [(r.slot, r.state, r.note) for r in list_runs(ledger)]
        assert (state, note) == ("sending", "interrupted; resumes")
        server.handler.data_reply = None
        for key in ("DIGEST_MAIL_SMTP_URL", "DIGEST_MAIL_SMTP_CONCURRENCY"):
            monkeypatch.setenv(key, env[key])
        resumed = run("schedule", "run-due", "--now", slot_time)
        assert ": sent: resumed and sent 2026-W48 to weekly: 31 sent," in resumed.output
        counts = server.counts()
        assert len(counts) == 31 and set(counts.values()) == {1}
    finally:
        release.set()
        server.stop()
