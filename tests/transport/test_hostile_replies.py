"""A relay's reply is remote text: it reaches the terminal escaped, never raw.

A compromised or hostile relay (or anything in between on a loopback-only test here)
answers with terminal escape sequences in its 5xx text; ``send`` and ``status`` print
the failure with the control characters escaped, and the reply is still recorded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos_helpers import deliveries, env_for
from conftest import Runner
from faultserver import Fault, FaultPlan, FaultServer

EVIL = Fault("550-esc", "RCPT", "reply", "550 5.1.1 \x1b]0;owned\x07\x1b[2J\x1b[31mRED")


def test_terminal_escapes_in_replies_are_shown_escaped(
    workspace: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    plan = FaultPlan(script={"yamada.taro@example.jp": [EVIL]})
    with FaultServer(plan) as server:
        for key, value in env_for(server.url).items():
            monkeypatch.setenv(key, value)
        sent = run("send", "--list", "weekly", "--yes")
        status = run("status")
    for result in (sent, status):
        assert "yamada.taro@example.jp: 550 5.1.1 \\x1b]0;owned\\x07" in result.output
        assert not any(c in result.output for c in "\x1b\x07"), result.output
    draft = next((workspace / "drafts").iterdir())
    rows = deliveries(workspace, f"{draft.name}/weekly")
    assert rows["yamada.taro@example.jp"].state == "failed"
    assert rows["yamada.taro@example.jp"].reply.startswith("5.1.1 \x1b]0;owned")


def test_terminal_escapes_in_a_bounce_are_shown_escaped(workspace: Path, run: Runner) -> None:
    """A DSN is mail anyone can send: its diagnostic text is printed escaped too."""
    fixture = Path(__file__).parents[1] / "fixtures" / "bounces" / "postfix-hard.eml"
    data = fixture.read_bytes().replace(
        b"Diagnostic-Code: smtp; 550 5.1.1 ",
        b"Diagnostic-Code: smtp; 550 5.1.1 \x1b]0;owned\x07\x1b[2J ",
    )
    assert b"\x1b]0;owned" in data
    for sub in ("new", "cur", "tmp"):
        (workspace / "bounces" / sub).mkdir(parents=True)
    (workspace / "bounces" / "new" / "1.eml").write_bytes(data)
    imported = run("bounces", "import", "bounces", "--trust-unmatched")
    listed = run("suppressions", "list")
    assert imported.exit_code == 0, imported.output
    for result in (imported, listed):
        assert "\\x1b]0;owned\\x07" in result.output
        assert not any(c in result.output for c in "\x1b\x07"), result.output
