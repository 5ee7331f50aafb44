"""Who receives an edition: ``subscribers``, ``unsubscribe``, ``suppressions``, ``serve``,
``bounces``.

Long on purpose: the commands of one stage (audience), as every module of this package
holds one stage's commands (:data:`~digest_mail.cli.LAZY_COMMANDS`), and each is thin:
parse, call one function of :mod:`digest_mail.audience` or the ledger, print. A quarter
of the lines are the commands' ``--help`` text, which docs/commands.md is made from.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from digest_mail.audience.addresses import normalize_address
from digest_mail.audience.bounces import import_bounces
from digest_mail.audience.editing import add_subscriber, import_list, remove_subscriber
from digest_mail.audience.encodings import ENCODINGS
from digest_mail.audience.export import export_list, export_list_file
from digest_mail.audience.lists import require_list, resolve_list, tally_list
from digest_mail.audience.rows import RowProblem
from digest_mail.audience.unsubscribe import read_token, signing_key
from digest_mail.cli import echo_json, json_option, pass_workspace, printable
from digest_mail.config import Workspace
from digest_mail.errors import DigestMailError, InputError
from digest_mail.files import display_path
from digest_mail.ledger.db import Ledger, ledger_exists, open_ledger, utcnow
from digest_mail.ledger.suppressions import (
    SUPPRESSION_REASONS,
    get_suppression,
    list_suppressions,
    suppress,
    unsuppress,
)


@contextmanager
def _existing_ledger(workspace: Workspace) -> Iterator[Ledger | None]:
    """The ledger if there is one: reading a list must not create var/ledger.sqlite3."""
    if not ledger_exists(workspace):
        yield None
        return
    with open_ledger(workspace) as ledger:
        yield ledger


_LIST = click.argument("list_ref", metavar="LIST")
_ENCODING = click.option(
    "--encoding",
    type=click.Choice(ENCODINGS),
    default=None,
    help="The file's encoding when it cannot be told from its bytes [default: detected].",
)


@click.group()
def subscribers() -> None:
    """The lists: subscribers/<name>.csv (LIST is a list name or a CSV path).

    \b
    Example:
        digest-mail subscribers check weekly
        digest-mail subscribers add weekly hanako@example.jp --name '佐藤 花子'
    """


@subscribers.command("check")
@_LIST
@_ENCODING
@json_option
@pass_workspace
def check_command(workspace: Workspace, list_ref: str, encoding: str | None, as_json: bool) -> None:
    """Report every problem row of LIST with its line; exit 1 if there is any.

    Problems: invalid addresses, duplicates (case-insensitive), control characters or
    line breaks in any field, an unknown status, extra fields. A send skips such rows.
    The encoding (UTF-8, UTF-16, cp932) is detected; a file whose bytes read as both
    UTF-8 and cp932, differently, is an error until --encoding says which.

    \b
    Example:
        digest-mail subscribers check weekly
    """
    path = resolve_list(workspace, list_ref)
    found: list[dict[str, object]] = []

    def report(problem: RowProblem) -> None:
        if as_json:
            found.append(problem.as_dict())
        else:
            click.echo(str(problem))

    with _existing_ledger(workspace) as ledger:
        counts = tally_list(path, ledger=ledger, on_problem=report, encoding=encoding)
    if as_json:
        echo_json(
            {
                "list": list_ref,
                "path": display_path(path),
                **counts.as_dict(),
                "rows_with_problems": found,
            }
        )
    else:
        click.echo(f"{display_path(path)}: {counts.summary()}")
    if counts.problems:
        raise click.exceptions.Exit(1)


@subscribers.command("count")
@_LIST
@_ENCODING
@json_option
@pass_workspace
def count_command(workspace: Workspace, list_ref: str, encoding: str | None, as_json: bool) -> None:
    """Count LIST's rows: subscribed, unsubscribed, suppressed (ledger), problems.

    \b
    Example:
        digest-mail subscribers count weekly --json
    """
    path = resolve_list(workspace, list_ref)
    with _existing_ledger(workspace) as ledger:
        counts = tally_list(path, ledger=ledger, encoding=encoding)
    if as_json:
        echo_json({"list": list_ref, "path": display_path(path), **counts.as_dict()})
    else:
        click.echo(f"{display_path(path)}: {counts.summary()}")


@subscribers.command("add")
@_LIST
@click.argument("address")
@click.option("--name", default=None, help="The name used in the greeting.")
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Subscribe again an address that unsubscribed or bounced (lifts its suppression).",
)
@click.option(
    "--new-list",
    is_flag=True,
    help="Start LIST even though its name is close to an existing list's.",
)
@pass_workspace
def add_command(
    workspace: Workspace,
    list_ref: str,
    address: str,
    name: str | None,
    resubscribe: bool,
    new_list: bool,
) -> None:
    """Subscribe ADDRESS to LIST (the file is rewritten atomically).

    A LIST that does not exist yet is started; a new name one typo away from an
    existing list (weekley for weekly) is refused unless --new-list.

    \b
    Example:
        digest-mail subscribers add weekly hanako@example.jp --name '佐藤 花子'
    """
    path = resolve_list(workspace, list_ref, create=True, allow_similar=new_list)
    with _existing_ledger(workspace) as ledger:
        result = add_subscriber(
            path, address, name=name, ledger=ledger, resubscribe=resubscribe, today=utcnow()[:10]
        )
    shown = display_path(path)
    if result.action == "unchanged":
        click.echo(f"{result.email} is already subscribed to {shown}")
    else:
        click.echo(f"{result.action} {result.email} on {shown}")


@subscribers.command("remove")
@_LIST
@click.argument("address")
@pass_workspace
def remove_command(workspace: Workspace, list_ref: str, address: str) -> None:
    """Delete ADDRESS's row from LIST.

    This only edits the list: to make sure an address never receives mail again (from
    any list), use 'digest-mail unsubscribe ADDRESS'.

    \b
    Example:
        digest-mail subscribers remove weekly hanako@example.jp
    """
    path = resolve_list(workspace, list_ref)
    removed = remove_subscriber(path, address)
    click.echo(f"removed {removed.email} (line {removed.line}) from {display_path(path)}")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--into", "list_ref", required=True, metavar="LIST", help="The list to merge into.")
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Subscribe again addresses that unsubscribed or bounced (lifts their suppression).",
)
@click.option(
    "--new-list",
    is_flag=True,
    help="Start LIST even though its name is close to an existing list's.",
)
@_ENCODING
@json_option
@pass_workspace
def import_command(
    workspace: Workspace,
    file: Path,
    list_ref: str,
    resubscribe: bool,
    new_list: bool,
    encoding: str | None,
    as_json: bool,
) -> None:
    """Merge the CSV FILE into LIST: new rows appended, existing rows updated.

    Rows of FILE with problems are rejected and reported with their line; an address
    that unsubscribed or bounced is never subscribed again without --resubscribe.

    \b
    Example:
        digest-mail subscribers import signups.csv --into weekly
    """
    target = resolve_list(workspace, list_ref, create=True, allow_similar=new_list)
    with _existing_ledger(workspace) as ledger:
        report = import_list(
            file,
            target,
            ledger=ledger,
            resubscribe=resubscribe,
            encoding=encoding,
            today=utcnow()[:10],
        )
    if as_json:
        echo_json({"into": display_path(target), **report.as_dict()})
        return
    for problem in report.problems:
        click.echo(problem)
    click.echo(f"imported {display_path(file)} into {display_path(target)}: {report.summary()}")


@subscribers.command("export")
@_LIST
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (atomically) instead of standard output.",
)
@click.option(
    "--raw",
    is_flag=True,
    help="Write cells exactly; by default a cell starting with = + - @ gets a leading '.",
)
@_ENCODING
@pass_workspace
def export_command(
    workspace: Workspace, list_ref: str, output: Path | None, raw: bool, encoding: str | None
) -> None:
    """Write LIST's valid rows as UTF-8 CSV (same columns, addresses normalized).

    Problem rows are left out and counted on standard error. A cell that starts with
    =, +, -, @, a tab or CR gets a leading ' so that a spreadsheet shows it instead of
    running it as a formula (CSV injection); --raw writes the exact values.

    \b
    Example:
        digest-mail subscribers export weekly -o weekly-utf8.csv
    """
    path = resolve_list(workspace, list_ref)
    if output is None:
        # UTF-8 whatever the locale says: the output is a file format, not a message.
        sys.stdout.flush()
        stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="")
        try:
            counts = export_list(path, stdout, raw=raw, encoding=encoding)
        finally:
            stdout.flush()
            stdout.detach()
    else:
        counts = export_list_file(path, output, raw=raw, encoding=encoding)
        written = counts.rows - counts.problems
        click.echo(f"wrote {written} rows to {display_path(output)}", err=True)
    if counts.problems:
        click.echo(
            f"left out {counts.problems} problem rows "
            f"(see 'digest-mail subscribers check {list_ref}')",
            err=True,
        )


@click.command("unsubscribe")
@click.argument("address", required=False)
@click.option("--token", help="A token from an unsubscribe link or a mailto subject instead.")
@click.option(
    "--reason",
    type=click.Choice(SUPPRESSION_REASONS),
    default="unsubscribed",
    show_default=True,
    help="Why the address must not receive mail.",
)
@click.option("--list", "list_name", default="", help="The list it asked to leave (recorded).")
@pass_workspace
def unsubscribe_command(
    workspace: Workspace, address: str | None, token: str | None, reason: str, list_name: str
) -> None:
    """Record an opt-out: ADDRESS never receives mail from any list again.

    For opt-outs that arrive by mail (the List-Unsubscribe mailto: subject is
    'unsubscribe TOKEN'), pass the token with --token.

    \b
    Example:
        digest-mail unsubscribe hanako@example.jp --list weekly
        digest-mail unsubscribe --token 'd2Vla2x5AGhhbmFrb0BleGFtcGxlLmpw.…'
    """
    if token:
        token = token.removeprefix("unsubscribe ").strip()
        found = read_token(signing_key(workspace), token)
        if found.test:
            click.echo(
                f"the token is from a test mail to {found.address}: nothing changed "
                "(test mails unsubscribe nobody)"
            )
            return
        list_name, address = found.list_name, found.address
    elif list_name:
        # Recorded as the suppression's source: a misspelt name would stay in the ledger.
        require_list(workspace, list_name)
    if not address:
        raise InputError("give an ADDRESS or --token", hint="digest-mail unsubscribe ADDRESS")
    try:
        email, _key = normalize_address(address.strip())
    except DigestMailError:
        email = address.strip()
        if "@" not in email:
            raise
    with open_ledger(workspace) as ledger:
        if suppress(ledger, email, reason=reason, source=list_name or "cli", detail="cli"):
            click.echo(f"suppressed {email} ({reason}, source {list_name or 'cli'})")
        else:
            existing = get_suppression(ledger, email)
            assert existing is not None
            click.echo(
                f"{email} was already suppressed ({existing.reason} since {existing.created_at})"
            )


@click.group()
def suppressions() -> None:
    """The ledger's suppressions: addresses that never receive mail again.

    \b
    Example:
        digest-mail suppressions list --reason bounced
    """


@suppressions.command("list")
@click.option("--reason", type=click.Choice(SUPPRESSION_REASONS), help="Only this reason.")
@json_option
@pass_workspace
def suppressions_list(workspace: Workspace, reason: str | None, as_json: bool) -> None:
    """List suppressions, oldest first.

    \b
    Example:
        digest-mail suppressions list --json
    """
    with _existing_ledger(workspace) as ledger:
        rows = list_suppressions(ledger, reason=reason) if ledger else []
    if as_json:
        echo_json([vars(row) for row in rows])
        return
    for row in rows:
        detail = f": {row.detail}" if row.detail else ""
        click.echo(
            printable(f"{row.created_at}  {row.reason:<12}  {row.address}  ({row.source}{detail})")
        )
    click.echo(f"{len(rows)} {'suppression' if len(rows) == 1 else 'suppressions'}")


@suppressions.command("remove")
@click.argument("address")
@pass_workspace
def suppressions_remove(workspace: Workspace, address: str) -> None:
    """Lift the suppression of ADDRESS (only when the person asked to receive mail again).

    \b
    Example:
        digest-mail suppressions remove hanako@example.jp
    """
    with open_ledger(workspace) as ledger:
        existing = get_suppression(ledger, address)
        if existing is None or not unsuppress(ledger, address):
            raise DigestMailError(
                f"{address} is not suppressed", hint="see 'digest-mail suppressions list'"
            )
    click.echo(f"removed the suppression of {existing.address} (was {existing.reason})")


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on [default: [serve] host].")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port; 0 picks a free one [default: [serve] port].",
)
@pass_workspace
def serve_command(workspace: Workspace, host: str | None, port: int | None) -> None:
    """Run the one-click unsubscribe endpoint (RFC 8058) until Ctrl-C.

    POST /unsubscribe?t=TOKEN with List-Unsubscribe=One-Click suppresses the address;
    GET shows a confirmation page whose button POSTs. Put it behind the https
    [unsubscribe] base_url with a reverse proxy. Each request is logged in one line,
    its token masked.

    \b
    Example:
        digest-mail serve --port 8025
    """
    # aiohttp is imported only by the command that needs it.
    from digest_mail.audience.serve import ServerInfo, serve

    settings = workspace.settings.serve

    def ready(info: ServerInfo) -> None:
        click.echo(f"Serving one-click unsubscribe on {info.url} (Ctrl-C to stop)")
        sys.stdout.flush()

    def log(line: str) -> None:
        # Flushed per line: under systemd or a pipe a request must show when it happens.
        click.echo(line)
        sys.stdout.flush()

    serve(
        workspace,
        host=host if host is not None else settings.host,
        port=port if port is not None else settings.port,
        on_ready=ready,
        log=log,
    )


@click.group()
def bounces() -> None:
    """Delivery status notifications: suppress addresses that bounce.

    \b
    Example:
        digest-mail bounces import ~/Maildir/.bounces
    """


@bounces.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--trust-unmatched",
    is_flag=True,
    help="Also act on reports about mail this ledger did not send (another tool's bounces).",
)
@json_option
@pass_workspace
def bounces_import(workspace: Workspace, path: Path, trust_unmatched: bool, as_json: bool) -> None:
    """Read an mbox file or Maildir folder of bounces (RFC 3464 reports).

    A hard bounce (5.x.x, failed) suppresses the address at once; a soft bounce
    (4.x.x, failed after retrying) counts once per message sent, and the third within
    30 days suppresses it; a delay warning (Action: delayed) is no bounce; an abuse
    report (ARF) suppresses the complaining reader. A report counts only when the message it
    returns has the Message-ID this ledger sent to that address, so a forged bounce
    cannot unsubscribe a reader. Other messages are counted and ignored; importing the
    same mailbox twice changes nothing. A message that cannot be parsed is named
    (position and Message-ID) and skipped, and the rest are processed: the exit status
    stays 0, the summary counts the unreadable ones (delete them from the mailbox).

    \b
    Example:
        digest-mail bounces import bounces.mbox
    """
    with open_ledger(workspace) as ledger:
        result = import_bounces(path, ledger, trust_unmatched=trust_unmatched)
    if as_json:
        echo_json(result.as_dict())
        return
    for event in result.events:
        click.echo(printable(str(event)))
    for unreadable in result.unreadable:
        click.echo(printable(str(unreadable)))
    click.echo(result.summary())


COMMANDS = [subscribers, unsubscribe_command, suppressions, serve_command, bounces]
