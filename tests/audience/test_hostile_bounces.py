"""Anyone can mail the bounce mailbox (issue 14 item 5): a message the parser cannot read
is named and skipped, and every report after it is still processed."""

from __future__ import annotations

import json
import mailbox
from pathlib import Path

from conftest import Runner

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bounces"


def nested_multiparts(depth: int, message_id: str) -> bytes:
    """A message of ``depth`` multiparts nested in each other: the stdlib parser recurses
    once per level and raises RecursionError."""
    head = (
        "From: mailer-daemon@evil.example\r\nTo: bounces@chrysanthemum-digest.example.jp\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: {message_id}\r\n"
        "MIME-Version: 1.0\r\n"
    ).encode()
    parts = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level)
        for level in range(depth)
    )
    return head + parts + b"Content-Type: text/plain\r\n\r\nx\r\n"


def test_a_message_the_parser_chokes_on_is_skipped_and_the_rest_processed(
    workspace: Path, run: Runner
) -> None:
    box = mailbox.mbox(workspace / "bounces.mbox")
    box.add((FIXTURES / "postfix-hard.eml").read_bytes())
    box.add(nested_multiparts(1000, "<bomb@evil.example>"))
    box.add((FIXTURES / "exchange-hard.eml").read_bytes())
    box.flush()
    box.close()

    result = run("bounces", "import", "bounces.mbox", "--trust-unmatched")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # Both real reports, the one before the hostile messages and the one after them.
    assert [line.split(":")[0] for line in lines[:2]] == [
        "ghost.user@example.com",
        "kaigai.tantou@example.net",
    ]
    assert lines[2].startswith(
        "unreadable: message 2 <bomb@evil.example> skipped: RecursionError: maximum recursion"
    )
    assert lines[3].startswith("bounces.mbox: 3 messages, 2 delivery reports, ")
    assert lines[3].endswith("; 2 addresses newly suppressed; 1 unreadable message skipped")
    assert len(lines) == 4


def test_an_unreadable_message_in_a_maildir_is_named_by_its_file(
    workspace: Path, run: Runner
) -> None:
    box = mailbox.Maildir(workspace / "Maildir")
    key = box.add(nested_multiparts(1000, ""))
    box.add((FIXTURES / "postfix-hard.eml").read_bytes())
    box.close()
    result = run("bounces", "import", "Maildir", "--trust-unmatched", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (unreadable,) = report["unreadable"]
    assert (unreadable["position"], unreadable["message_id"]) == (key, "")
    assert unreadable["reason"].startswith("RecursionError: maximum recursion depth exceeded")
    assert report["hard"] == 1 and report["suppressed"] == 1
