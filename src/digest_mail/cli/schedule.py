"""approve, schedule list | run-due | daemon | install."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import click

from digest_mail.cli import echo_json, json_option, pass_workspace
from digest_mail.config import Workspace
from digest_mail.ledger.db import utcnow
from digest_mail.schedule import approval as approvals
from digest_mail.schedule import rundue
from digest_mail.schedule.overview import format_view, next_sends, overview
from digest_mail.schedule.slots import parse_now
from digest_mail.schedule.timers import cron_line, run_daemon, systemd_units


def _state_dict(state: approvals.ApprovalState) -> dict[str, Any]:
    approval = state.approval
    return {
        "edition": state.edition,
        "status": state.status,
        "content_hash": approval.content_hash if approval else None,
        "approved_at": approval.approved_at if approval else None,
        "approved_by": approval.approved_by if approval else None,
        "withdrawn_at": approval.withdrawn_at if approval else None,
        "message": state.describe(),
    }


@click.command()
@click.argument("draft")
@click.option("--withdraw", is_flag=True, help="Withdraw the approval instead.")
@json_option
@pass_workspace
def approve(workspace: Workspace, draft: str, withdraw: bool, as_json: bool) -> None:
    """Approve DRAFT for its scheduled send (or withdraw the approval).

    The approval records the draft's content hash, who approved and when. Composing
    the draft again afterwards withdraws it: approve the new version.

    \b
    Example:
        digest-mail approve 2026-W48
        digest-mail approve --withdraw 2026-W48
    """
    if withdraw:
        state = approvals.withdraw(workspace, draft)
        if as_json:
            echo_json(_state_dict(state))
        else:
            click.echo(f"Withdrew the approval of {state.label}; no schedule will send it.")
            for line in next_sends(workspace):
                click.echo(line)
        return
    result = approvals.approve(workspace, draft)
    if as_json:
        echo_json(_state_dict(result.state))
        return
    state = result.state
    short = state.approval.content_hash[:12] if state.approval else ""
    if result.previous.ok:
        click.echo(f"{state.describe()} (content {short}); nothing to do.")
        return
    if result.previous.status == "changed":
        click.echo(f"{state.label} changed after its earlier approval; approved the new version.")
    click.echo(f"Approved {state.label} (content {short}).")
    for line in next_sends(workspace):
        click.echo(line)


@click.group()
def schedule() -> None:
    """Weekly sends: next runs, send what is due, stay running, install a timer.

    Schedules are the [[schedule]] tables of digest-mail.toml (name, list, cron,
    timezone, edition, late_after).

    \b
    Example:
        digest-mail schedule list
        digest-mail schedule run-due
    """


def _now(value: str | None) -> datetime | None:
    return None if value is None else parse_now(value)


now_option = click.option(
    "--now",
    "now",
    metavar="ISO8601",
    help="Pretend it is this time (e.g. 2026-11-30T08:00:00+09:00).",
)


@schedule.command(name="list")
@now_option
@json_option
@pass_workspace
def list_command(workspace: Workspace, now: str | None, as_json: bool) -> None:
    """Each schedule's next three runs (local and UTC) and the edition it would send.

    \b
    Example:
        digest-mail schedule list
        digest-mail schedule list --now 2026-11-29T12:00:00Z --json
    """
    views = overview(workspace, now=_now(now))
    if as_json:
        echo_json([v.as_dict() for v in views])
        return
    for view in views:
        for line in format_view(view):
            click.echo(line)


@schedule.command(name="run-due")
@now_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Say what each schedule would send, to how many, through which relay; do nothing.",
)
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="With --now and a real relay: send for real (readers get the mail).",
)
@json_option
@pass_workspace
@click.pass_context
def run_due(
    ctx: click.Context,
    workspace: Workspace,
    now: str | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Send each schedule's due slot once (for cron or a systemd timer).

    Claims the most recent slot at or before now, sends the newest approved edition
    not yet sent to the list (resuming an interrupted send), or skips it: nothing
    approved (staff get a notice) or missed by more than late_after. The exit status is
    the highest of the schedules' outcomes: 1 a slot failed, 3 the relay refused us, 4
    readers are still queued or deferred (the next run-due resumes the send), 5 only
    uncertain rows of a crashed run remain (decide with send --resend-uncertain).

    --dry-run rehearses: it claims no slot and sends nothing. --now pretends it is
    another time; through a relay beyond this machine it sends only with --yes (the
    capture outbox and loopback relays need none).

    \b
    Example:
        digest-mail schedule run-due
        digest-mail schedule run-due --dry-run --now 2026-11-30T08:00:00+09:00
    """
    moment = _now(now)
    if dry_run:
        outcomes = rundue.rehearse_due(workspace, now=moment)
    else:
        if moment is not None:
            _guard_pretend_time(workspace, now or "", yes=yes)
        outcomes = rundue.run_due(workspace, now=moment)
    if as_json:
        echo_json([o.as_dict() for o in outcomes])
    else:
        for outcome in outcomes:
            click.echo(outcome.line())
        if dry_run:
            click.echo("Dry run: no slot claimed, nothing sent.")
    # The most severe outcome decides: 1 a slot failed, 3 the relay refused us, 4 readers
    # are still queued or deferred (the next run-due resumes), 5 only uncertain rows remain.
    worst = max((o.exit_code for o in outcomes), default=0)
    if worst:
        ctx.exit(worst)


def _guard_pretend_time(workspace: Workspace, now: str, *, yes: bool) -> None:
    """``--now`` is for rehearsing; through a real relay it reaches readers. The capture
    outbox and loopback relays (dev-smtp) keep the mail on this machine."""
    from digest_mail.delivery.identity import real_relays
    from digest_mail.errors import DigestMailError

    relays = real_relays(workspace.settings)
    if relays and not yes:
        raise DigestMailError(
            f"--now {now} would send for real through {relays[0]}: readers get the mail",
            hint="rehearse with --dry-run, or add --yes to send for real",
        )


@schedule.command()
@pass_workspace
def daemon(workspace: Workspace) -> None:
    """Stay in the foreground: sleep until the next slot, run it like run-due, repeat.

    Logs one line per run; a failed run is logged, retried within late_after, and the
    daemon carries on. SIGTERM or Ctrl-C stops it (an interrupted send resumes on the
    next run). It reads digest-mail.toml once: restart it after editing the schedules.

    \b
    Example:
        digest-mail schedule daemon
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def take_signals() -> None:
        # A campaign's event loop takes SIGINT/SIGTERM while it sends and resets them to
        # the defaults afterwards: take them back after every run.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)

    def log(line: str) -> None:
        # Flushed per line: under systemd or a pipe, a log line must not wait for a buffer.
        click.echo(f"{utcnow()} {line}")
        sys.stdout.flush()

    take_signals()
    log(f"digest-mail schedule daemon started in {workspace.root}")
    run_daemon(
        workspace,
        clock=lambda: datetime.now(UTC),
        wait=stop.wait,
        log=log,
        after_run=take_signals,
    )


@schedule.command()
@click.option("--systemd", is_flag=True, help="Print a systemd service + timer pair (the default).")
@click.option("--cron", is_flag=True, help="Print a crontab line.")
@pass_workspace
def install(workspace: Workspace, systemd: bool, cron: bool) -> None:
    """Print a systemd service + timer pair (default), or a crontab line, that runs run-due.

    Nothing is installed: save the output where it says. With both --systemd and
    --cron, both are printed: install one of them, not both. The crontab line creates
    var/ before it writes var/schedule.log, so it works in a fresh workspace.

    \b
    Example:
        digest-mail schedule install
        (crontab -l; digest-mail schedule install --cron) | crontab -
    """
    parts = []
    if systemd or not cron:
        parts.append(systemd_units(workspace))
    if cron:
        parts.append(cron_line(workspace))
    if len(parts) > 1:
        parts.insert(0, "# Both kinds, as asked: install ONE of them, or every slot runs twice.\n")
    click.echo("\n".join(parts), nl=False)


COMMANDS = [approve, schedule]
