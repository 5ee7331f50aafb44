"""Running the schedules unattended: a foreground daemon, or a timer that runs run-due.

:func:`run_daemon` sleeps until the next slot and runs it like ``run-due``;
:func:`systemd_units` and :func:`cron_line` print the timer alternatives, which run
``schedule run-due`` every minute (it is idempotent: the ledger's claim decides).
Nothing here installs anything: ``schedule install`` prints, the operator installs.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from digest_mail.config import Workspace
from digest_mail.ledger.schedule_runs import slot_key
from digest_mail.schedule.rundue import run_due
from digest_mail.schedule.slots import load_schedules, next_due, require_schedules

__all__ = ["cron_line", "executable", "run_daemon", "systemd_units"]


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
    from digest_mail.delivery.report import CampaignInterrupted

    schedules = require_schedules(workspace)
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
            log(f"retrying at {slot_key(target)}")
        else:
            log(
                f"next: {schedule.name} at {schedule.local(target):%Y-%m-%d %H:%M %Z}"
                f" ({slot_key(target)})"
            )
        while (remaining := (target - clock()).total_seconds()) > 0:
            if wait(min(remaining, max_wait)):
                log("stopping")
                return


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
    require_schedules(workspace)
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
    require_schedules(workspace)
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
