"""The documentation: the command reference is generated from --help and kept current,
and every relative link between the Markdown files resolves."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

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
