"""The ledger itself: ``ledger info``, ``ledger migrate``.

What an operator does to the database rather than with the newsletter: see which ledger a
workspace uses and what it holds, and bring a shared schema up to this digest-mail's
after an upgrade. A URL given here never carries a password
(config.ledger_url_problem refuses one before anything connects).
"""

from __future__ import annotations

from pathlib import Path

import click

from digest_mail.cli import echo_json, json_option, pass_workspace
from digest_mail.config import Workspace
from digest_mail.errors import LedgerError
from digest_mail.files import display_path
from digest_mail.ledger.db import Ledger, connect, ledger_exists, open_ledger
from digest_mail.ledger.tables import describe_ledger


def _shown(ledger: Ledger) -> str:
    """A SQLite file relative to the current directory when inside it; a URL as it is."""
    return display_path(Path(ledger.description)) if ledger.kind == "sqlite" else ledger.description


def _open(workspace: Workspace, url: str | None, *, migrate: bool = False) -> Ledger:
    if url is None:
        return open_ledger(workspace, migrate=migrate)
    return connect(url, base=workspace.root, passfile=workspace.ledger_passfile, migrate=migrate)


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


COMMANDS = [ledger]
