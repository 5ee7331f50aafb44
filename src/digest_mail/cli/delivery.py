"""Delivery: ``test-send``, ``send``, ``status``, ``dev-smtp``."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from digest_mail.cli import echo_json, json_option, pass_workspace, printable, unwrapped
from digest_mail.config import Workspace
from digest_mail.delivery.campaign import count_recipients, list_names_of, run_campaign
from digest_mail.delivery.dryrun import warn_before_sending
from digest_mail.delivery.report import CampaignReport, CampaignStopped, lists_phrase
from digest_mail.delivery.status import campaign_status
from digest_mail.delivery.testsend import send_test
from digest_mail.errors import DigestMailError
from digest_mail.transport.factory import describe_transport


def _draft(workspace: Workspace, ref: str | None) -> Any:
    from digest_mail.render.draft import latest_draft, load_draft

    return load_draft(workspace, ref) if ref else latest_draft(workspace)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[CampaignReport], None] | None]:
    """A rich progress bar on a terminal, plain log lines otherwise."""
    if not enabled:
        yield None
        return
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            # The bar's own escape sequences go to the terminal as they are.
            console=Console(file=unwrapped(sys.stdout)),
        )
        task: list[Any] = []

        def update(report: CampaignReport) -> None:
            if not task:
                # Started with the first figures, not before the send: its refresh
                # thread would keep the send from forking its snapshot writer.
                bar.start()
                task.append(bar.add_task(f"Sending {report.edition}", total=report.queued))
            # The total grows while a streamed snapshot is still being written.
            bar.update(task[0], completed=report.sent_this_run, total=report.queued)

        try:
            yield update
        finally:
            if task:
                bar.stop()
        return
    last = [time.monotonic()]

    def log(report: CampaignReport) -> None:
        now = time.monotonic()
        if now - last[0] >= 5:
            last[0] = now
            click.echo(f"… {report.sent_this_run} of {report.queued} sent", err=True)

    yield log


def _finish(report: CampaignReport, *, as_json: bool, verb: str) -> None:
    if as_json:
        echo_json(report.as_dict())
    else:
        if report.tried_this_run == 0 and report.complete:
            click.echo(
                f"Nothing left to send: {report.edition} to {report.list_name} is complete "
                f"({report.summary()})"
            )
        elif report.sent_this_run == report.sent:
            click.echo(f"{verb} {report.edition} to {report.list_name}: {report.summary()}")
        else:
            # A resumed run: what this run sent, then where the campaign stands.
            click.echo(
                f"{verb} {report.edition} to {report.list_name}: {report.sent_this_run} this run; "
                f"in all {report.summary()}"
            )
        for failure in report.failures[:20]:
            reply = f"{failure['code'] or ''} {printable(failure['reply'])}".strip()
            click.echo(f"  {failure['email']}: {reply}")
        if len(report.failures) > 20:
            click.echo(f"  … {len(report.failures) - 20} more: see 'digest-mail status'")
        if report.handed_over:
            click.echo(
                f"  This sender's share is done; {report.with_other_senders} still in flight "
                f"with other senders, which finish the campaign "
                f"(follow it with 'digest-mail status {report.campaign_id}')"
            )
    if report.handed_over:
        return
    if not report.complete:
        raise DigestMailError(
            f"campaign {report.campaign_id} is not complete ({report.stopped or report.summary()})",
            hint=_resume_hint(report),
            exit_code=report.exit_code,
        )


def _resume_hint(report: CampaignReport) -> str:
    command = report.resume_command()
    if report.uncertain and report.queued == 0 and report.deferred == 0:
        return (
            f"{report.uncertain} may have been delivered already; rerun '{command} "
            "--resend-uncertain' to send them again"
        )
    return f"rerun '{command}' to resume"


def _stopped(exc: CampaignStopped, *, as_json: bool) -> None:
    report = exc.report
    if report is not None:
        if as_json:
            echo_json(report.as_dict())
        else:
            click.echo(f"Stopped {report.edition} to {report.list_name}: {report.summary()}")
    raise exc


@click.command()
@click.argument("draft", required=False)
@click.option(
    "--list",
    "list_names",
    multiple=True,
    metavar="NAME",
    help="The list: subscribers/NAME.csv (default: [lists] default). Repeat to send one "
    "campaign to several lists, each address once.",
)
@click.option("--dry-run", is_flag=True, help="Count who would receive it; send nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    help="SMTP connections (default [smtp] concurrency).",
)
@click.option(
    "--rate", type=click.FloatRange(min=0), help="Messages per second at most (0: no limit)."
)
@click.option(
    "--resend-uncertain",
    is_flag=True,
    help="Resend messages a crashed run may or may not have sent.",
)
@click.option(
    "--no-breaker",
    is_flag=True,
    help="Do not stop when many of the first recipients are refused (a stale list).",
)
@click.option("--force", is_flag=True, help="Send even though 'check' reports errors.")
@json_option
@pass_workspace
def send(
    workspace: Workspace,
    draft: str | None,
    list_names: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    concurrency: int | None,
    rate: float | None,
    resend_uncertain: bool,
    no_breaker: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Send DRAFT (default: the newest draft) to a list; rerun to resume.

    The first run snapshots the list (minus suppressions and invalid rows) into the
    ledger; every rerun sends only what is not yet sent, so nobody gets the edition
    twice, not even through another campaign of the same edition. With several
    --list, an address on more than one list gets one message. Asks for
    confirmation with the count unless --yes. A draft that 'check' reports errors
    for is refused unless --force.

    A refusal about a reader's mailbox (5.1.1 …) fails and suppresses that
    reader; a refusal of us (sender, client, login, policy), at whatever stage,
    stops the send with every recipient still queued (docs/relays.md).

    \b
    Exit status:
        0  complete: sent, or failed for a reason about that reader
        1  error: a mistake, configuration, refused input
        3  stopped: the relay refused us, the circuit breaker tripped, or
           interrupted; nobody suppressed: fix, then rerun
        4  incomplete: recipients queued or deferred: rerun to resume
        5  uncertain: only rows in flight when a run or its connection died remain:
           --resend-uncertain

    \b
    Example:
        digest-mail send 2026-W48 --list weekly --dry-run
        digest-mail send 2026-W48 --list weekly --yes
        digest-mail send 2026-W48 --list weekly --list partners --yes
    """
    if not list_names:
        list_names = (workspace.settings.lists.default,)
        # Said on stderr, so that --json output stays one document.
        click.echo(f"Using list {list_names[0]} ([lists] default)", err=True)
    lists = list_names_of(list_names)
    where_lists = lists_phrase(lists)
    again = " ".join(f"--list {name}" for name in lists)
    the_draft = _draft(workspace, draft)
    if not dry_run:
        from digest_mail.delivery.identity import refuse_sample_identity

        # Before the count and the question: the answer would be refused anyway.
        refuse_sample_identity(workspace)
    # --yes shows nothing before sending: skip this counting pass over the whole list
    # (seconds at a million rows); the campaign's snapshot counts as it goes.
    preview = count_recipients(workspace, the_draft, lists) if dry_run or not yes else None
    where = describe_transport(workspace)
    if dry_run:
        assert preview is not None
        warn_before_sending(workspace, preview)
        if as_json:
            data = preview.as_dict()
            data["transport"] = where
            echo_json(data)
        else:
            received = (
                f", {preview.already_received} had it from another campaign"
                if preview.already_received
                else ""
            )
            click.echo(
                f"Would send {the_draft.id} to {preview.queued} of {where_lists} via {where} "
                f"({preview.sent} already sent, {preview.suppressed} suppressed, "
                f"{preview.skipped_invalid} skipped-invalid{received})"
            )
            for warning in preview.warnings:
                click.echo(f"Warning: {printable(warning)}")
        return
    _require_checked(workspace, the_draft, force=force)
    if preview is not None:  # not --yes: ask first
        pending = preview.queued + preview.deferred
        pending += preview.uncertain if resend_uncertain else 0
        if pending and not sys.stdin.isatty():
            raise DigestMailError(
                f"refusing to send {the_draft.id} to {pending} recipients without confirmation",
                hint=f"add --yes: 'digest-mail send {the_draft.id} {again} --yes'",
            )
        if pending:
            click.confirm(
                f"Send {the_draft.id} ({the_draft.subject}) to {pending} recipients of "
                f"{where_lists} via {where}?",
                abort=True,
            )
    with _progress(not as_json) as progress:
        try:
            report = run_campaign(
                workspace,
                the_draft,
                lists,
                concurrency=concurrency,
                rate=rate,
                resend_uncertain=resend_uncertain,
                progress=progress,
                breaker=not no_breaker,
            )
        except CampaignStopped as exc:
            _stopped(exc, as_json=as_json)
            return
    _finish(report, as_json=as_json, verb="Sent")
    from digest_mail.cli.extras import announce_archive

    announce_archive(workspace, the_draft, report, as_json=as_json)


def _require_checked(workspace: Workspace, draft: Any, *, force: bool) -> None:
    """The check's errors stop a send before its first message; --force says so loudly."""
    from digest_mail.review.check import DraftCheckError, error_lines, require_no_errors

    try:
        require_no_errors(
            draft,
            how_to_override=", or add --force to send it anyway",
            settings=workspace.settings,
        )
    except DraftCheckError as exc:
        if not force:
            raise
        count = len(exc.report.errors)
        click.echo(
            f"WARNING: --force: sending {draft.id} despite {count} check"
            f" error{'s' if count != 1 else ''}:",
            err=True,
        )
        for line in error_lines(exc.report):
            click.echo(line, err=True)


@click.command("test-send")
@click.argument("draft", required=False)
@click.option(
    "--to",
    "to",
    multiple=True,
    metavar="staff|ADDR",
    help="The staff list (default) or addresses; repeat for several.",
)
@json_option
@pass_workspace
def test_send(workspace: Workspace, draft: str | None, to: tuple[str, ...], as_json: bool) -> None:
    """Send DRAFT (default: the newest draft) to staff, subject marked [TEST].

    Only the staff list ([lists] staff) or explicit addresses: a subscriber list is
    refused. Each test send is recorded in the ledger; tests may repeat. One
    connection to the relay; exit status as for send (0 complete, 3 the relay
    refused us, 4 an address deferred).

    \b
    Example:
        digest-mail test-send 2026-W48
        digest-mail test-send 2026-W48 --to editors@example.jp
    """
    the_draft = _draft(workspace, draft)
    try:
        report = send_test(workspace, the_draft, to=list(to) or None)
    except CampaignStopped as exc:
        _stopped(exc, as_json=as_json)
        return
    _finish(report, as_json=as_json, verb="Test-sent")


@click.command()
@click.argument("campaign", required=False)
@click.option(
    "--all", "show_all", is_flag=True, help="Test sends too (without CAMPAIGN: every campaign)."
)
@json_option
@pass_workspace
def status(workspace: Workspace, campaign: str | None, show_all: bool, as_json: bool) -> None:
    """What a campaign sent, deferred, failed and suppressed, and how to resume it.

    CAMPAIGN is EDITION/LIST (2026-W48/weekly) or an edition id (all its lists);
    default: the most recent campaign to a list; test sends are left out unless --all.
    Right after a crash, the messages that were in flight (no sender holds the campaign
    any more) show as uncertain.

    \b
    Example:
        digest-mail status
        digest-mail status --all
        digest-mail status 2026-W48/weekly --json
    """
    reports = campaign_status(workspace, campaign, include_tests=show_all)
    if as_json:
        several = campaign or show_all
        echo_json([r.as_dict() for r in reports] if several else reports[-1].as_dict())
        return
    for report in reports:
        so_far = " so far" if report.state == "snapshotting" else ""
        click.echo(
            f"{report.campaign_id} ({report.kind}, {report.state}): "
            f"{report.total} recipients{so_far}"
        )
        if len(report.list_names) > 1:
            click.echo(f"  lists {', '.join(report.list_names)}, each address once")
        if report.already_received:
            click.echo(f"  {report.already_received} left out: they had it from another campaign")
        click.echo(
            f"  {report.sent} sent, {report.queued} queued, {report.deferred} deferred, "
            f"{report.failed} failed, {report.suppressed} suppressed, "
            f"{report.skipped_invalid} skipped-invalid, {report.uncertain} uncertain"
        )
        if report.failures:
            click.echo("  Failed or deferred:")
            for failure in report.failures:
                attempts = failure["attempts"]
                reply = f"{failure['code'] or ''} {printable(failure['reply'])}".strip()
                plural = "s" if attempts != 1 else ""
                click.echo(f"    {failure['email']}: {reply} ({attempts} attempt{plural})")
        if report.uncertain_addresses:
            click.echo(
                "  Uncertain (in flight when a run or its connection died;"
                " may have been delivered):"
            )
            for address in report.uncertain_addresses:
                click.echo(f"    {address}")
        # On a shared ledger, each sender's share once there is more than one to tell
        # apart (reruns that found nothing to send are left out), or one died or sends.
        shares = [s for s in report.senders if s.state in ("sending", "died") or s.has_share]
        if report.shared_ledger and (
            len(shares) > 1 or any(s.state in ("sending", "died") for s in shares)
        ):
            click.echo("  Senders:")
            for sender in shares:
                relay = f" via {printable(sender.relay)}" if sender.relay else ""
                in_flight = f", {sender.in_flight} in flight" if sender.in_flight else ""
                click.echo(
                    f"    {printable(sender.host)} pid {sender.pid} ({sender.state}{relay}): "
                    f"{sender.sent} sent{in_flight}, {sender.uncertain} uncertain, "
                    f"{sender.failed} failed, {sender.deferred} deferred"
                )
        if report.stopped:
            click.echo(f"  Stopped: {report.stopped}")
        if not report.complete and report.kind == "campaign":
            command = report.resume_command()
            click.echo(f"  Resume: {command}")
            if report.uncertain:
                click.echo(f"  Resend the uncertain ones: {command} --resend-uncertain")


@click.command("dev-smtp")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=1025,
    show_default=True,
    help="Port on 127.0.0.1.",
)
@click.option(
    "--maildir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to keep received mail (default: outbox/dev-smtp).",
)
@pass_workspace
def dev_smtp(workspace: Workspace, port: int, maildir: Path | None) -> None:
    """Run a local SMTP server on 127.0.0.1 that keeps all mail in a Maildir.

    Try the real SMTP path without a relay: point [smtp] url (or
    DIGEST_MAIL_SMTP_URL) at it. Nothing is forwarded. Stop with Ctrl-C.

    \b
    Example:
        digest-mail dev-smtp --port 1025 &
        DIGEST_MAIL_SMTP_URL=smtp://127.0.0.1:1025 digest-mail test-send
    """
    from digest_mail.transport.devsmtp import serve_capture

    directory = maildir or workspace.outbox_dir / "dev-smtp"

    def started(bound: int) -> None:
        click.echo(
            f"dev-smtp: listening on 127.0.0.1:{bound}, keeping mail in {directory}/ (Ctrl-C stops)"
        )

    def received(sender: str, recipients: list[str], size: int) -> None:
        click.echo(f"dev-smtp: {sender} -> {', '.join(recipients)} ({size} bytes)")

    asyncio.run(serve_capture(directory, port=port, on_start=started, on_message=received))
    click.echo("dev-smtp: stopped")


COMMANDS = [test_send, send, status, dev_smtp]
