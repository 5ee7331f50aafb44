"""Around the edition: ``articles import|list``, ``init``, ``archive``."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

import click

from digest_mail.cli import echo_json, json_option, pass_workspace
from digest_mail.cli.scaffold import init_workspace
from digest_mail.config import Workspace, parse_duration
from digest_mail.content.articles import select_articles
from digest_mail.content.feed import import_feed
from digest_mail.errors import DigestMailError
from digest_mail.files import display_path
from digest_mail.render.archive import (
    FinishedCampaign,
    archived_editions,
    edition_url,
    publish_after_campaign,
    publish_archive,
)
from digest_mail.render.draft import Draft, resolve_draft


@click.group()
def articles() -> None:
    """The articles/ folder: import from the site's feed, list what compose would pick.

    \b
    Example:
        digest-mail articles import https://chrysanthemum-digest.example.jp/feed.xml
        digest-mail articles list --since 7d
    """


@articles.command("import")
@click.argument("feed")
@click.option("--dry-run", is_flag=True, help="Report what would be written; write nothing.")
@click.option(
    "--allow-http",
    is_flag=True,
    help="Fetch a plain http:// FEED (insecure: anyone on the way can change it).",
)
@json_option
@pass_workspace
def import_command(
    workspace: Workspace, feed: str, dry_run: bool, allow_http: bool, as_json: bool
) -> None:
    """Write one article per new entry of an RSS or Atom FEED (a path or an https URL).

    Entries whose url is already an article are skipped; entries without an https link,
    a title or a date, or with a per-reader placeholder such as @@email@@, are reported
    as invalid. HTML in the feed is sanitized and stored as Markdown: nothing from the
    feed reaches a template as markup. A local FEED file may be at most 20 MB, like a
    fetched one.

    \b
    Example:
        digest-mail articles import https://chrysanthemum-digest.example.jp/feed.xml
        digest-mail articles import saved-feed.xml --dry-run
    """
    if allow_http and feed.lower().startswith("http://"):
        click.echo(
            "WARNING: fetching the feed over plain http: anyone on the network path can"
            " change its articles and links.",
            err=True,
        )
    report = import_feed(workspace, feed, dry_run=dry_run, allow_http=allow_http)
    if as_json:
        echo_json({**report.as_dict(), "dry_run": dry_run})
        return
    verb = "would write" if dry_run else "new"
    for item in report.new:
        click.echo(f"{verb}: {display_path(item.path)}  {item.title}")
    for skipped in report.skipped:
        click.echo(f"skipped: {skipped.url}  ({skipped.reason})")
    for problem in report.invalid:
        click.echo(f"invalid: {problem.entry}: {problem.reason}")
    click.echo(
        f"{len(report.new)} new, {len(report.skipped)} skipped, {len(report.invalid)} invalid"
    )


@articles.command("list")
@click.option(
    "--since",
    default=None,
    metavar="DURATION",
    help="Only articles published within this span, e.g. 7d (default: [edition] since).",
)
@click.option("--all", "show_all", is_flag=True, help="Every article, whatever its date.")
@click.option("--category", default=None, help="Only articles of this category.")
@json_option
@pass_workspace
def list_command(
    workspace: Workspace, since: str | None, show_all: bool, category: str | None, as_json: bool
) -> None:
    """Show the articles compose would pick, newest first.

    \b
    Example:
        digest-mail articles list --since 7d
        digest-mail articles list --all --category 国際 --json
    """
    span = None
    if not show_all:
        text = since or workspace.settings.edition.since
        span = dt.timedelta(seconds=parse_duration(text, key="--since"))
    chosen = select_articles(workspace, since=span, category=category, today=dt.date.today())
    chosen.sort(key=lambda a: a.published, reverse=True)
    if as_json:
        echo_json(
            [
                {
                    "path": display_path(a.path),
                    "title": a.title,
                    "url": a.url,
                    "published": a.published.isoformat(),
                    "category": a.category,
                }
                for a in chosen
            ]
        )
        return
    for article in chosen:
        category_text = f"[{article.category}] " if article.category else ""
        click.echo(f"{article.published.isoformat()}  {category_text}{article.title}")
        click.echo(f"            {display_path(article.path)}")
    click.echo(f"{len(chosen)} article{'s' if len(chosen) != 1 else ''}")


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--staff",
    "staff",
    multiple=True,
    metavar="ADDR",
    help="An address for subscribers/staff.csv, where test-send goes (repeatable).",
)
def init(directory: Path, staff: tuple[str, ...]) -> None:
    """Create a new workspace in DIRECTORY (missing or empty; nothing is overwritten).

    It holds a commented digest-mail.toml (mail is captured in outbox/ until an SMTP
    relay is set), the default email templates to adapt, subscribers/staff.csv and an
    empty weekly.csv, a sample article and a .gitignore. test-send goes to the staff
    list: give your address with --staff, or add it to subscribers/staff.csv later.

    \b
    Example:
        digest-mail init weekly-news --staff editor@example.jp
    """
    report = init_workspace(directory, staff=staff, today=dt.date.today())
    click.echo(f"Created {display_path(report.root)}/ with {len(report.files)} files.")
    if report.staff:
        click.echo(f"test-send goes to: {', '.join(report.staff)}")
    else:
        click.echo(
            "subscribers/staff.csv has no address yet: add yours (a line 'you@example.jp,名前')"
            " before test-send."
        )
    click.echo("Next:")
    click.echo(f"  cd {shlex.quote(display_path(report.root))}")
    if report.sample_identity:
        click.echo(
            f"  edit digest-mail.toml: {', '.join(report.sample_identity)} are the sample's"
            " (example.jp); set your own domain before a real relay (check warns, send refuses)"
        )
    for command in report.next_commands:
        click.echo(f"  {command}")


@click.command()
@click.argument("draft", required=False)
@json_option
@pass_workspace
def archive(workspace: Workspace, draft: str | None, as_json: bool) -> None:
    """Publish DRAFT (default: the newest) as a static page in archive/<edition>/.

    Only what readers received: a draft never sent to a list, or changed since it was
    sent, is refused.

    Per-recipient values become neutral ones (no address, no unsubscribe token);
    archive/index.html and the Atom feed archive/feed.xml are rebuilt. Host the
    archive/ folder at [archive] base_url: the email's "view in browser" link goes
    there. send and schedule run-due do this by themselves once a campaign is
    complete.

    \b
    Example:
        digest-mail archive 2026-W48
        rsync -a archive/ www.example.jp:/srv/newsletter/
    """
    from digest_mail.render.mailed import check_archivable

    chosen = resolve_draft(workspace, draft)
    check_archivable(workspace, chosen)
    page = publish_archive(workspace, chosen)
    editions = archived_editions(workspace)
    url = edition_url(workspace.settings, chosen.id)
    if as_json:
        echo_json(
            {
                "edition": chosen.id,
                "page": display_path(page),
                "url": url,
                "index": display_path(workspace.archive_dir / "index.html"),
                "feed": display_path(workspace.archive_dir / "feed.xml"),
                "editions": len(editions),
            }
        )
        return
    plural = "edition" if len(editions) == 1 else "editions"
    click.echo(f"Published {display_path(page)}  ({url})")
    click.echo(
        f"Rebuilt {display_path(workspace.archive_dir / 'index.html')} and "
        f"{display_path(workspace.archive_dir / 'feed.xml')} ({len(editions)} {plural})"
    )


def announce_archive(
    workspace: Workspace, draft: Draft, report: FinishedCampaign, *, as_json: bool
) -> None:
    """After ``send``: publish the web archive if the campaign is complete, and say so.

    The mail has gone out by now, so a page that cannot be written is a warning with the
    command to retry, never an error that would make the send look failed.
    """
    try:
        page = publish_after_campaign(workspace, draft, report)
    except (DigestMailError, OSError) as exc:
        click.echo(f"Warning: the web archive was not updated: {exc}", err=True)
        click.echo(f"Hint: fix that, then run 'digest-mail archive {draft.id}'", err=True)
        return
    if page is not None and not as_json:
        url = edition_url(workspace.settings, draft.id)
        click.echo(f"Archived {display_path(page)}  ({url})")


COMMANDS: list[click.Command] = [archive, articles, init]
