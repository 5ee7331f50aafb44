"""The documentation: the command reference is generated from --help and kept current,
and every relative link between the Markdown files resolves."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import click

from conftest import REPO

spec = importlib.util.spec_from_file_location(
    "cli_reference", REPO / "scripts" / "cli_reference.py"
)
assert spec and spec.loader
cli_reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cli_reference)

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def documents() -> list[Path]:
    """The Markdown pages a reader follows links between."""
    pages = [*REPO.glob("*.md"), *(REPO / "docs").glob("*.md"), *(REPO / "benchmarks").glob("*.md")]
    return sorted(pages)


def prose(markdown: str) -> str:
    """``markdown`` without code blocks, where a "[x](y)" is code, not a link."""
    return FENCE.sub("", markdown)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens,
    a repeated heading suffixed -1, -2."""
    found: set[str] = set()
    for heading in HEADING.findall(prose(markdown)):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    text = INLINE_CODE.sub("", prose(page.read_text(encoding="utf-8")))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http(s), mailto: not this repository's files
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(root)}: {target}"
        if not linked.exists():
            broken.append(f"{where}: no such file")
        elif (
            anchor
            and linked.suffix == ".md"
            and anchor not in anchors(linked.read_text(encoding="utf-8"))
        ):
            broken.append(f"{where}: no heading with that anchor")
    return broken


def test_readme_starts_with_the_two_setup_commands() -> None:
    head = (REPO / "README.md").read_text(encoding="utf-8").splitlines()[:20]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_every_command_has_help_with_an_example() -> None:
    missing = [
        " ".join(path) or "digest-mail"
        for path, command in cli_reference.iter_commands(cli_reference.cli)
        if "Example" not in (command.help or "")
    ]
    assert missing == []


def test_command_reference_is_current() -> None:
    text = cli_reference.REFERENCE.read_text(encoding="utf-8")
    assert cli_reference.updated(text) == text, "run: .venv/bin/python scripts/cli_reference.py"


def test_every_command_has_its_section_in_the_reference() -> None:
    text = cli_reference.REFERENCE.read_text(encoding="utf-8")
    titles = {
        " ".join(("digest-mail", *path))
        for path, _ in cli_reference.iter_commands(cli_reference.cli)
    }
    linked = {title for title in titles if f"(#{title.replace(' ', '-')})" in text}
    assert titles - linked == set()
    assert {title.replace(" ", "-") for title in titles} <= anchors(text)


def test_every_relative_link_resolves() -> None:
    pages = documents()
    assert REPO / "README.md" in pages and REPO / "docs" / "commands.md" in pages
    assert [link for page in pages for link in broken_links(page)] == []


def test_the_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Exit statuses\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[fine](other.md#exit-statuses) [gone](missing.md) [no anchor](other.md#nowhere)\n"
        "[here](#a-heading) [web](https://example.jp/x.md)\n\n## A heading\n\n"
        "```\n[in code](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page, tmp_path) == [
        "page.md: missing.md: no such file",
        "page.md: other.md#nowhere: no heading with that anchor",
    ]


def test_heading_anchors_follow_github() -> None:
    text = (
        "# Ten minutes to a first send\n## `digest-mail send`\n## Exit statuses\n## Exit statuses\n"
    )
    assert anchors(text) == {
        "ten-minutes-to-a-first-send",
        "digest-mail-send",
        "exit-statuses",
        "exit-statuses-1",
    }


def command_lines(markdown: str) -> list[str]:
    """Every ``digest-mail …`` invocation the page shows, in code blocks or inline code."""
    code = [line for block in FENCE.finditer(markdown) for line in block[0].splitlines()]
    code += [span.strip("`") for span in INLINE_CODE.findall(prose(markdown))]
    found = []
    for text in code:
        for match in re.finditer(r"(?<![\w./-])digest-mail(?= |$)(.*)", text):
            found.append("digest-mail" + re.split(r"[;|)&>#`]", match.group(1))[0])
    return found


def wrong_options(invocation: str) -> list[str]:
    """What in ``invocation`` the CLI does not have: a subcommand or an option."""
    command: click.Command = cli_reference.cli
    words = invocation.split()[1:]
    while words and isinstance(command, click.Group) and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    known |= {"-h", "--help"}
    wrong = [w.split("=")[0] for w in words if w.startswith("-") and w.split("=")[0] not in known]
    if isinstance(command, click.Group) and words and not words[0].startswith("-"):
        wrong.append(words[0])
    return wrong


def test_every_command_shown_in_the_docs_exists_with_its_options() -> None:
    cli_reference.load_all()
    pages = [page for page in documents() if page != cli_reference.REFERENCE]
    wrong = [
        f"{page.relative_to(REPO)}: {line}: {', '.join(bad)}"
        for page in pages
        for line in command_lines(page.read_text(encoding="utf-8"))
        if (bad := wrong_options(line))
    ]
    assert wrong == []


def test_a_wrong_option_or_subcommand_is_found() -> None:
    cli_reference.load_all()
    assert wrong_options("digest-mail schedule daemon --now 2026-11-30T08:00:00+09:00") == ["--now"]
    assert wrong_options("digest-mail schedule start") == ["start"]
    assert wrong_options("digest-mail send 2026-W48 --list weekly --yes --dry-run") == []
    page = "Run `digest-mail check --json` or:\n\n```sh\nX=1 digest-mail status --json  # ok\n```\n"
    assert command_lines(page) == ["digest-mail status --json  ", "digest-mail check --json"]
