"""Building and looking at an edition: ``compose``, ``check``, ``preview``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from digest_mail.cli import echo_json, json_option, pass_workspace
from digest_mail.config import Workspace
from digest_mail.errors import DigestMailError
from digest_mail.files import display_path
from digest_mail.render.compose import compose_edition
from digest_mail.render.draft import resolve_draft
from digest_mail.review.check import (
    GMAIL_CLIP_BYTES,
    Finding,
    check_draft,
    longest_values,
    sent_html,
)
from digest_mail.review.preview import DEFAULT_WIDTHS, open_preview, screenshot_draft
from digest_mail.review.probes import fetch_image, find_spamassassin


@click.command()
@click.argument("articles", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--since",
    metavar="DURATION",
    default=None,
    help="Articles published within this span, e.g. 7d (default without ARTICLE: [edition] since).",
)
@click.option("--category", default=None, help="Only articles of this category, e.g. 国際.")
@click.option(
    "--edition",
    "edition_id",
    default=None,
    help="Edition id (default: this ISO week, e.g. 2026-W48).",
)
@click.option(
    "--subject",
    default=None,
    help="Subject; {edition} becomes the id (default: [edition] subject).",
)
@click.option(
    "--intro", default=None, help="Intro paragraph under the greeting (default: [edition] intro)."
)
@click.option(
    "--preheader", default=None, help="Inbox preview line (default: [edition] preheader)."
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace a draft that was already sent or approved (withdraws the approval).",
)
@json_option
@pass_workspace
def compose(
    workspace: Workspace,
    articles: tuple[Path, ...],
    since: str | None,
    category: str | None,
    edition_id: str | None,
    subject: str | None,
    intro: str | None,
    preheader: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Build a draft edition into drafts/<edition>/ from ARTICLE files or recent articles.

    With ARTICLE files, they appear in the order given; without, every article in
    articles/ published within --since (default [edition] since) appears, newest first.
    Writes index.html, index.txt, index.mjml, edition.json and preview.eml; composing
    the same edition again replaces its draft, unless that draft was sent or approved
    and the content differs: then --force is needed, and the approval is withdrawn.

    \b
    Example:
        digest-mail compose --since 7d
        digest-mail compose articles/a.md articles/b.md --subject "{edition} 特集号 (菊)"
    """
    draft, replaced = compose_edition(
        workspace,
        articles,
        since=since,
        category=category,
        edition_id=edition_id,
        subject=subject,
        intro=intro,
        preheader=preheader,
        force=force,
    )
    # The size a reader gets: placeholders filled with the longest values (check's bounds).
    settings = workspace.settings
    sent = len(sent_html(draft.html, settings, longest_values(settings)).encode("utf-8"))
    notices = replaced.notices(display_path(draft.path))
    if as_json:
        echo_json(
            {
                "edition": draft.id,
                "path": str(draft.path),
                "subject": draft.subject,
                "articles": len(draft.articles),
                "html_bytes": draft.html_bytes,
                "html_bytes_as_sent": sent,
                "text_lines": draft.text_lines,
                "content_hash": draft.content_hash,
                "notices": notices,
            }
        )
        return
    count = len(draft.articles)
    click.echo(f"{display_path(draft.path)}/")
    click.echo(
        f"  {draft.subject}\n"
        f"  {count} article{'' if count == 1 else 's'}, HTML {sent / 1024:.1f} KB as sent, "
        f"text {draft.text_lines} lines"
    )
    if sent > GMAIL_CLIP_BYTES:
        click.echo("  warning: the HTML is over Gmail's 102 KB clip; see 'digest-mail check'")
    for notice in notices:
        click.echo(notice)


@click.command()
@click.argument("draft", required=False)
@click.option(
    "--list",
    "list_name",
    metavar="NAME",
    default=None,
    help="Measure the size with this list's longest name, address and unsubscribe link "
    "(default: upper bounds, see docs/articles.md).",
)
@click.option(
    "--fetch-images",
    is_flag=True,
    help="Fetch each image URL and warn about those that do not load (needs the network).",
)
@click.option(
    "--spamassassin/--no-spamassassin",
    "spamassassin",
    default=None,
    help="Score the message offline with SpamAssassin (default: when it is installed).",
)
@json_option
@pass_workspace
def check(
    workspace: Workspace,
    draft: str | None,
    list_name: str | None,
    fetch_images: bool,
    spamassassin: bool | None,
    as_json: bool,
) -> None:
    """Find what will hurt DRAFT in inboxes; exit 1 when there are errors.

    Errors: HTML over Gmail's 102 KB clip as sent (placeholders filled with the longest
    values), images without alt text, relative or http links, no unsubscribe placeholder,
    unknown placeholders or template/MJML leftovers, an empty text part. Warnings: text
    lines over 72 columns (URLs excepted), HTML markup in the text part, an article
    without its link in the text part, a missing preheader, HTML near the clip, a card
    with neither lead nor points, front-matter fields the templates do not show, a
    subject SpamAssassin scores (SUBJ_ALL_CAPS), a SpamAssassin score above 0, images
    that do not load (--fetch-images), addresses of the --list that the configured
    relay cannot take (no SMTPUTF8: asks it). DRAFT is an edition id or a draft folder
    (default: the latest draft).

    \b
    Example:
        digest-mail check
        digest-mail check 2026-W48 --list weekly --fetch-images --json
    """
    from digest_mail.audience.lists import resolve_list

    chosen = resolve_draft(workspace, draft)
    settings = workspace.settings
    fill = longest_values(
        settings, list_path=None if list_name is None else resolve_list(workspace, list_name)
    )
    executable = None
    if spamassassin is not False:
        executable = find_spamassassin()
        if executable is None and spamassassin:
            raise DigestMailError(
                "spamassassin is not installed", hint="apt-get install spamassassin"
            )
    report = check_draft(
        chosen,
        settings=settings,
        fill=fill,
        fetch=fetch_image if fetch_images else None,
        spamassassin=executable,
    )
    if list_name is not None:
        # Addresses the configured relay cannot take: asks it (one EHLO) if there are any.
        from digest_mail.delivery.dryrun import list_smtputf8_warning

        gap = list_smtputf8_warning(workspace, resolve_list(workspace, list_name))
        if gap:
            report = dataclasses.replace(
                report, findings=(*report.findings, Finding("warning", "smtputf8", gap))
            )
    if as_json:
        echo_json(report.as_dict())
    else:
        click.echo(f"{report.draft_id}: {display_path(Path(report.draft_path))}/")
        for finding in report.findings:
            click.echo(f"  {finding.level}: {finding.code}: {finding.message}")
        if report.spam is not None:
            click.echo(f"  spamassassin: {report.spam.describe()}")
        for note in report.notes:
            click.echo(f"  note: {note}")
        verdict = "OK" if report.ok else "FAILED"
        click.echo(
            f"{verdict}: {len(report.errors)} errors, {len(report.warnings)} warnings "
            f"(HTML {report.html_bytes / 1024:.1f} KB as sent with {report.measured_with}, "
            f"text {report.text_lines} lines)"
        )
    if not report.ok:
        raise SystemExit(1)


@click.command()
@click.argument("draft", required=False)
@click.option(
    "--width",
    "widths",
    type=int,
    multiple=True,
    metavar="PX",
    help=f"Screenshot width; repeat for several (default: {', '.join(map(str, DEFAULT_WIDTHS))}).",
)
@click.option(
    "--height",
    type=int,
    default=None,
    metavar="PX",
    help="Window height (default: the whole page).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the HTML in a browser instead.")
@click.option(
    "--dark",
    is_flag=True,
    help="Also screenshot each width in dark mode (prefers-color-scheme: dark).",
)
@click.option(
    "--serve",
    is_flag=True,
    help="Serve a live preview page on this machine that recomposes DRAFT on every save.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of --serve on 127.0.0.1 (default: 8026; 0: any free port).",
)
@json_option
@pass_workspace
def preview(
    workspace: Workspace,
    draft: str | None,
    widths: tuple[int, ...],
    height: int | None,
    open_browser: bool,
    dark: bool,
    serve: bool,
    port: int | None,
    as_json: bool,
) -> None:
    """Screenshot DRAFT at phone and desktop widths with headless Chromium, or serve it live.

    The placeholders are filled with a sample reader first. PNGs go to
    drafts/<edition>/preview/ (preview-375.png; with --dark also preview-375-dark.png).
    Images that did not load are named (Chromium fetches nothing over the network here).
    DRAFT is an edition id or a draft folder (default: the latest draft). Needs Chromium
    and Japanese fonts: apt-get install chromium fonts-noto-cjk.

    With --serve, a page at http://127.0.0.1:PORT/ (this machine only) shows the edition
    as sent, at 375 and 600 px side by side, light or dark, its plain-text part, the
    inbox line and the check results, for a reader of a list you pick (staff by
    default). Every save in articles/, templates/email/ or digest-mail.toml composes
    DRAFT again the way it was composed (without drafts: as 'compose' would) and the page
    updates by itself; a mistake shows as compose's error line above the last good render.
    Ctrl-C stops it. See docs/editing.md.

    \b
    Example:
        digest-mail preview
        digest-mail preview 2026-W48 --width 375 --width 600 --dark
        digest-mail preview --open
        digest-mail preview --serve
    """
    if serve:
        given = [
            name
            for name, used in (
                ("--open", open_browser),
                ("--width", bool(widths)),
                ("--height", height is not None),
                ("--dark", dark),
                ("--json", as_json),
            )
            if used
        ]
        if given:
            raise click.UsageError(f"--serve cannot be combined with {', '.join(given)}")
        _serve_preview(workspace, draft, port)
        return
    chosen = resolve_draft(workspace, draft)
    if open_browser:
        page = open_preview(chosen, workspace.settings)
        click.echo(f"opened {display_path(page)}")
        return
    shots = screenshot_draft(
        chosen, workspace.settings, widths=widths or DEFAULT_WIDTHS, height=height, dark=dark
    )
    if as_json:
        echo_json(
            {
                "edition": chosen.id,
                "screenshots": [
                    {
                        "width": s.width,
                        "height": s.height,
                        "dark": s.dark,
                        "path": str(s.path),
                        "broken_images": list(s.broken_images),
                    }
                    for s in shots
                ],
            }
        )
        return
    for shot in shots:
        mode = ", dark" if shot.dark else ""
        click.echo(f"{display_path(shot.path)}  ({shot.width}×{shot.height}{mode})")
    broken = list(dict.fromkeys(src for shot in shots for src in shot.broken_images))
    for src in broken:
        click.echo(f"warning: image did not load in the preview: {src}")
    if broken:
        click.echo(
            "  (the preview fetches nothing over the network: the screenshots show a gap"
            " there; open each URL in a browser to see that readers will get it)"
        )


def _serve_preview(workspace: Workspace, draft: str | None, port: int | None) -> None:
    # Imported here: aiohttp and watchfiles would slow every other command's start.
    from digest_mail.review.liveserver import DEFAULT_PORT, LiveInfo, serve_live
    from digest_mail.review.liveview import Composed

    def ready(info: LiveInfo) -> None:
        edition = info.edition or "a new draft"
        click.echo(f"Live preview of {edition}: {info.url}")
        click.echo(
            f"  listening on {info.host} only (this machine); "
            f"watching {', '.join(info.watched)}; Ctrl-C stops"
        )

    def changed(outcome: Composed | tuple[str, ...], paths: set[str]) -> None:
        if isinstance(outcome, Composed):
            draft = outcome.draft
            count = len(draft.articles)
            click.echo(
                f"{outcome.at} composed {draft.id}: {count} article{'' if count == 1 else 's'}, "
                f"HTML {draft.html_bytes / 1024:.1f} KB, in {outcome.seconds:.2f} s"
            )
        else:
            for line in outcome:
                click.echo(line)

    serve_live(
        workspace,
        draft,
        port=DEFAULT_PORT if port is None else port,
        spamassassin=find_spamassassin(),
        on_ready=ready,
        on_event=changed,
    )
    click.echo("stopped")


COMMANDS = [compose, check, preview]
