"""The ledger itself: ``ledger info``, ``ledger migrate``, ``ledger copy``.

What an operator does to the database rather than with the newsletter: see which ledger a
workspace uses and what it holds, bring a shared schema up to this digest-mail's after
an upgrade, and move a ledger (SQLite into PostgreSQL, say) whole. A URL given here
never carries a password (config.ledger_url_problem refuses one before anything
connects).
"""

from __future__ import annotations

from pathlib import Path

import click

from digest_mail.cli import echo_json, json_option, pass_workspace
from digest_mail.config import SQLITE_SCHEME, Workspace, ledger_url_problem
from digest_mail.errors import ConfigError, LedgerError
from digest_mail.files import display_path
from digest_mail.ledger.copy import PAGE, TableCopy, copy_ledger
from digest_mail.ledger.db import Ledger, connect, ledger_exists, open_ledger, sqlite_path
from digest_mail.ledger.tables import describe_ledger


def _shown(ledger: Ledger) -> str:
    """A SQLite file relative to the current directory when inside it; a URL as it is."""
    return display_path(Path(ledger.description)) if ledger.kind == "sqlite" else ledger.description


def _open(workspace: Workspace, url: str | None, *, migrate: bool = False) -> Ledger:
    if url is None:
        return open_ledger(workspace, migrate=migrate)
    return connect(url, base=workspace.root, passfile=workspace.ledger_passfile, migrate=migrate)


def _verdict(table: TableCopy) -> str:
    if table.ok:
        return "ok"
    return f"MISMATCH: {table.source_rows} rows in the source, checksum {table.source_checksum}"


@click.group()
def ledger() -> None:
    """The ledger: which database, its schema, moving it ([ledger] url).

    The ledger records every campaign, delivery, suppression, approval and schedule
    run. It is a SQLite file in the workspace (var/ledger.sqlite3) unless [ledger] url
    (or DIGEST_MAIL_LEDGER_URL) names a PostgreSQL database shared by several hosts.
    See docs/deployment.md.

    \b
    Example:
        digest-mail ledger info
        digest-mail ledger migrate
    """


@ledger.command("info")
@json_option
@pass_workspace
def info_command(workspace: Workspace, as_json: bool) -> None:
    """Which database the workspace's ledger is, its schema and its rows per table.

    Never shows a password. Reading it creates nothing: a workspace whose SQLite
    ledger was never written says so.

    \b
    Example:
        digest-mail ledger info
        digest-mail ledger info --json
    """
    if not ledger_exists(workspace):
        raise LedgerError(
            f"no ledger yet: {display_path(workspace.ledger_path)} does not exist",
            hint="the first send, approve or unsubscribe creates it",
        )
    with open_ledger(workspace) as opened:
        info = describe_ledger(opened)
        shown = _shown(opened)
    if as_json:
        echo_json(info.as_dict())
        return
    where = "shared by several hosts" if info.shared else "this host only"
    click.echo(f"ledger {shown} ({info.kind}, {where})")
    click.echo(f"schema {info.schema} (this digest-mail: {info.code_schema})")
    width = max(len(name) for name in info.rows)
    for name, count in info.rows.items():
        click.echo(f"  {name:<{width}}  {count:>9}")


@ledger.command("migrate")
@click.argument("url", required=False)
@json_option
@pass_workspace
def migrate_command(workspace: Workspace, url: str | None, as_json: bool) -> None:
    """Bring the ledger's schema up to this digest-mail's.

    A SQLite ledger is upgraded whenever it is opened; a PostgreSQL ledger shared by
    several hosts only by this command, so that a host with new code never changes the
    schema under the old code of another: stop digest-mail on every host (sends,
    schedule daemons, timers), upgrade digest-mail, run this once, then start them
    again. URL (e.g. postgresql://digest_mail@db.example.jp:5432/digest) migrates
    another ledger than [ledger] url; a ledger made by a newer digest-mail is refused.

    \b
    Example:
        digest-mail ledger migrate
        digest-mail ledger migrate postgresql://digest_mail@127.0.0.1:5432/digest
    """
    with _open(workspace, url, migrate=True) as opened:
        before, after = opened.found_version, opened.schema_version()
        shown, kind = _shown(opened), opened.kind
    if as_json:
        echo_json({"ledger": shown, "kind": kind, "before": before, "after": after})
    elif before == after:
        click.echo(f"ledger {shown}: already at schema {after}")
    elif before == 0:
        click.echo(f"ledger {shown}: new, schema {after}")
    else:
        click.echo(f"ledger {shown}: schema {before} → {after}")


@ledger.command("copy")
@click.argument("source_url", metavar="SOURCE_URL")
@click.argument("dest_url", metavar="DEST_URL")
@click.option(
    "--page",
    type=click.IntRange(1, 100_000),
    default=PAGE,
    show_default=True,
    help="Rows read and written at a time.",
)
@json_option
@pass_workspace
def copy_command(
    workspace: Workspace, source_url: str, dest_url: str, page: int, as_json: bool
) -> None:
    """Copy a whole ledger into an empty one, e.g. SQLite into PostgreSQL.

    Suppressions, soft bounces, approvals, schedule runs, campaigns, their lists,
    deliveries and senders move in one transaction on DEST_URL; before it commits,
    every table's row count and a checksum of its rows are compared with the source's
    and printed. On any difference nothing is written (exit 1). DEST_URL must hold no
    rows (an empty database, or a new SQLite file): nothing is ever overwritten or
    doubled. Stop sends and schedules on the source first; its rows are read as one
    moment, and what is written after that moment is not copied.

    A sqlite:/// URL is relative to the workspace (sqlite:////srv/l.sqlite3 is
    absolute). URLs never carry a password: a PostgreSQL password comes from
    DIGEST_MAIL_LEDGER_PASSWORD, else libpq's PGPASSWORD, [ledger] passfile or
    ~/.pgpass. When both ends are PostgreSQL with different passwords, leave
    DIGEST_MAIL_LEDGER_PASSWORD and PGPASSWORD unset and put one line for each in the
    passfile (HOST:PORT:DATABASE:USER:PASSWORD): libpq picks the line matching each
    URL. Then set [ledger] url to DEST_URL.

    \b
    Example:
        digest-mail ledger copy sqlite:///var/ledger.sqlite3 \\
            postgresql://digest_mail@127.0.0.1:5432/digest
    """
    for url in (source_url, dest_url):
        if problem := ledger_url_problem(url):
            raise ConfigError(problem[0], hint=problem[1])
    if source_url.startswith(SQLITE_SCHEME):
        path = sqlite_path(source_url, base=workspace.root)
        if not path.is_file():
            raise LedgerError(
                f"no ledger to copy: {display_path(path)} does not exist",
                hint="a relative sqlite:/// URL is relative to the workspace",
            )
    with _open(workspace, source_url) as source, _open(workspace, dest_url) as destination:
        report = copy_ledger(source, destination, page=page)
        shown = _shown(source), _shown(destination)
    if as_json:
        echo_json({**report.as_dict(), "source": shown[0], "destination": shown[1]})
    else:
        click.echo(f"{shown[0]} → {shown[1]}")
        width = max(len(table.table) for table in report.tables)
        for table in report.tables:
            click.echo(
                f"  {table.table:<{width}}  {table.copied_rows:>9} rows  "
                f"checksum {table.copied_checksum}  {_verdict(table)}"
            )
    if not report.ok:
        raise LedgerError(
            f"the copy differs from the source in {', '.join(report.mismatched())}; "
            f"rolled back, nothing was written to {shown[1]}",
            hint="stop every send and schedule on the source, then copy again",
        )
    if not as_json:
        click.echo(f"Copied {report.rows} rows; every table's count and checksum match the source.")


COMMANDS = [ledger]
