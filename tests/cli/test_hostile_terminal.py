"""Issue 14 item 7: terminal escape sequences from outside never reach the operator.

A relay's reply, a feed's title and an article's field are foreign text. Whatever the
command, standard output and error escape control characters (``printable_output``
around every command), a feed entry holding them is refused at import with the entry
named, and an article file holding them is an error naming file and field instead of
"MJML does not compile" at the next compose.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from chaos_helpers import env_for
from conftest import Runner
from digest_mail.cli import cli
from faultserver import Fault, FaultPlan, FaultServer

OSC = "\x1b]0;owned\x07"
CSI = "\x1b[2J\x1b[31m"
C1 = "\x9b2J"
RAW = ("\x1b", "\x07", "\x9b")

FEED = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Chrysanthemum Digest</title>
  <id>urn:uuid:0a4b8c1e-0000-4000-8000-000000000001</id>
  <updated>2026-11-20T08:00:00+09:00</updated>
  <entry>
    <title>京都の職人 &#x1b;]0;owned&#x7;&#x1b;[2J 後継者</title>
    <link href="https://chrysanthemum-digest.example.jp/articles/kyoto-escape"/>
    <id>urn:uuid:0a4b8c1e-0000-4000-8000-000000000002</id>
    <updated>2026-11-20T08:00:00+09:00</updated>
    <summary>リード文。</summary>
  </entry>
  <entry>
    <title>普通の記事</title>
    <link href="https://chrysanthemum-digest.example.jp/articles/plain-entry"/>
    <id>urn:uuid:0a4b8c1e-0000-4000-8000-000000000003</id>
    <updated>2026-11-19T08:00:00+09:00</updated>
    <summary>リード文。</summary>
  </entry>
</feed>
"""


def _clean(output: str) -> None:
    assert not any(c in output for c in RAW), repr(output)


def test_a_feed_title_with_escapes_is_refused_at_import_with_the_entry_named(
    workspace: Path, run: Runner
) -> None:
    feed = workspace / "feed.xml"
    feed.write_text(FEED, encoding="utf-8")
    result = run("articles", "import", str(feed))
    _clean(result.output)
    assert result.output.splitlines()[:2] == [
        "new: articles/2026-11-19-plain-entry.md  普通の記事",
        # (Click drops the CSI sequence itself when the output is no terminal; on one,
        # it would be escaped like the OSC.)
        "invalid: entry 1 (京都の職人 \\x1b]0;owned\\x07 後継者): title: "
        "'京都の職人 \\x1b]0;owned\\x07\\x1b[2J 後継者' contains a control character (U+001B)",
    ]
    assert not list((workspace / "articles").glob("*kyoto-escape*"))
    listed = run("articles", "list", "--all")
    assert listed.exit_code == 0
    _clean(listed.output)
    assert run("compose", "articles/2026-11-19-plain-entry.md").exit_code == 0


def test_an_article_with_a_control_character_names_file_and_field(
    workspace: Path, run: Runner
) -> None:
    path = workspace / "articles" / "kyoto-crafts-successors.md"
    text = path.read_text(encoding="utf-8")
    title_line = next(line for line in text.splitlines() if line.startswith("title:"))
    line_number = text.splitlines().index(title_line) + 1
    path.write_text(
        text.replace(title_line, 'title: "京都の職人\\e]0;owned\\a 後継者"', 1), encoding="utf-8"
    )
    for args in (["compose", "articles/kyoto-crafts-successors.md"], ["articles", "list", "--all"]):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        _clean(result.output)
        assert result.output == (
            f"Error: articles/kyoto-crafts-successors.md:{line_number}: title: "
            "'京都の職人\\x1b]0;owned\\x07 後継者' contains a control character (U+001B)\n"
            "Hint: remove it; only text, spaces and line breaks belong in an article\n"
        ), args


def test_a_relay_refusing_us_with_escapes_is_shown_escaped_by_send_and_status(
    workspace: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop line of a refusal of the sender is an error message: it is foreign text
    too, and goes out through the same escaping as every other line."""
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    evil = Fault("554-esc", "RCPT", "reply", f"554 5.7.1 Relay access denied {OSC}{CSI}x")
    plan = FaultPlan(script={"yamada.taro@example.jp": [evil] * 50})
    with FaultServer(plan) as server:
        for key, value in env_for(server.url, concurrency=1).items():
            monkeypatch.setenv(key, value)
        sent = run("send", "--list", "weekly", "--yes")
        status = run("status")
        as_json = run("status", "--json")
    for result in (sent, status):
        _clean(result.output)
    stop = "refused us at RCPT TO: 554 5.7.1 Relay access denied \\x1b]0;owned\\x07"
    assert stop in sent.output
    assert stop in status.output
    _clean(as_json.output)
    json.loads(as_json.output)  # escaping C1 as \u009b keeps the JSON valid


def test_every_line_a_command_prints_goes_through_the_escaping() -> None:
    """The mechanism itself: a command that echoes foreign text raw, to stdout and to
    stderr, as text, still reaches the terminal escaped; TAB and LF are layout."""

    @cli.command("echo-foreign-test", hidden=True)
    def echo_foreign() -> None:
        click.echo(f"title\t{OSC}{CSI}{C1}\r\nnext")
        click.echo(f"reply {OSC}", err=True)
        print(f"print {OSC}")

    try:
        result = CliRunner().invoke(cli, ["echo-foreign-test"])
    finally:
        cli.commands.pop("echo-foreign-test")
    assert result.exit_code == 0
    # (Click itself drops CSI sequences when the output is no terminal.)
    assert result.output == (
        "title\t\\x1b]0;owned\\x07\\u009b2J\\x0d\nnext\n"
        "reply \\x1b]0;owned\\x07\n"
        "print \\x1b]0;owned\\x07\n"
    )
