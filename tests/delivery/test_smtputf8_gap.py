"""Our relay's missing SMTPUTF8 is not the reader's fault: the address fails with a
reason naming the extension, is never suppressed, and a dry run warns beforehand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos_helpers import deliveries, env_for
from conftest import Runner
from delivery_draft import make_draft, write_draft_folder
from digest_mail.config import find_workspace
from digest_mail.delivery.campaign import run_campaign
from digest_mail.ledger.suppressions import list_suppressions
from faultserver import FaultServer
from ledger_rows import workspace_ledger

ROWS = "yamada@example.jp,山田\n太郎@example.jp,太郎\n花子@example.jp,花子\n"


@pytest.mark.parametrize("client", ["pipelining", "aiosmtplib"])
def test_a_japanese_local_part_fails_naming_smtputf8_and_is_not_suppressed(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    (workspace / "subscribers" / "idn.csv").write_text("email,name\n" + ROWS, encoding="utf-8")
    with FaultServer(smtputf8=False) as server:
        for key, value in env_for(server.url).items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("DIGEST_MAIL_SMTP_CLIENT", client)
        ws = find_workspace(workspace)
        report = run_campaign(ws, make_draft(), "idn", concurrency=1)
    rows = deliveries(ws, report.campaign_id)
    reason = "the relay does not offer SMTPUTF8, needed for this non-ASCII address"
    assert {r.email: (r.state, r.code, r.reply) for r in rows.values()} == {
        "yamada@example.jp": ("sent", 250, ""),
        "太郎@example.jp": ("failed", None, reason),
        "花子@example.jp": ("failed", None, reason),
    }
    with workspace_ledger(ws) as ledger:
        assert list_suppressions(ledger) == []


def test_dry_run_warns_when_the_relay_lacks_smtputf8(
    workspace: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_draft_folder(workspace)
    (workspace / "subscribers" / "idn.csv").write_text("email,name\n" + ROWS, encoding="utf-8")
    with FaultServer(smtputf8=False) as server:
        env = env_for(server.url)
        result = run("send", "2026-W48", "--list", "idn", "--dry-run", env=env)
        as_json = run("send", "2026-W48", "--list", "idn", "--dry-run", "--json", env=env)
        connections = server.recorder.connections
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"Would send 2026-W48 to 3 of list idn via SMTP relay {server.url} "
        "(0 already sent, 0 suppressed, 0 skipped-invalid)",
        "Warning: 2 recipients with a non-ASCII local part (太郎@example.jp, 花子@example.jp) "
        f"will fail: SMTP relay {server.url} does not offer SMTPUTF8 (they are not "
        "suppressed; send them through a relay that offers it)",
    ]
    assert json.loads(as_json.output)["warnings"] == [result.output.splitlines()[1][9:]]
    assert connections == 2  # one EHLO per dry run, nothing sent
    assert server.recorder.messages() == []


def test_dry_run_asks_nothing_when_no_address_needs_smtputf8(workspace: Path, run: Runner) -> None:
    write_draft_folder(workspace)
    (workspace / "subscribers" / "idn.csv").write_text(
        "email,name\nyamada@例え.jp,山田\n", encoding="utf-8"
    )
    with FaultServer(smtputf8=False) as server:
        result = run("send", "2026-W48", "--list", "idn", "--dry-run", env=env_for(server.url))
        assert server.recorder.connections == 0
    assert result.exit_code == 0
    assert "Warning" not in result.output


def test_the_send_is_not_complete_until_they_go_through_a_relay_with_smtputf8(
    workspace: Path, run: Runner
) -> None:
    write_draft_folder(workspace)
    (workspace / "subscribers" / "idn.csv").write_text("email,name\n" + ROWS, encoding="utf-8")
    send = ("send", "2026-W48", "--list", "idn", "--yes")
    with FaultServer(smtputf8=False) as plain:
        first = run(*send, env=env_for(plain.url))
    assert first.exit_code == 4, first.output
    assert first.output.splitlines() == [
        "Sent 2026-W48 to idn: 1 sent, 0 deferred, 2 failed, 0 suppressed, 0 skipped-invalid "
        "(2 of the failed need a relay with SMTPUTF8)",
        "  太郎@example.jp: the relay does not offer SMTPUTF8, needed for this non-ASCII address",
        "  花子@example.jp: the relay does not offer SMTPUTF8, needed for this non-ASCII address",
        "Error: campaign 2026-W48/idn is not complete (2 with a non-ASCII local part need a "
        "relay that offers SMTPUTF8: not sent, not suppressed; rerun through such a relay)",
        "Hint: rerun 'digest-mail send 2026-W48 --list idn' to resume",
    ]
    with FaultServer(smtputf8=True, keep_messages=True) as utf8:
        rerun = run(*send, env=env_for(utf8.url))
        got = sorted(m.recipient for m in utf8.recorder.messages())
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.splitlines()[0] == (
        "Sent 2026-W48 to idn: 2 this run; in all 3 sent, 0 deferred, 0 failed, 0 suppressed, "
        "0 skipped-invalid"
    )
    assert got == ["太郎@example.jp", "花子@example.jp"]


def test_check_with_a_list_warns_when_the_relay_lacks_smtputf8(
    workspace: Path, run: Runner
) -> None:
    write_draft_folder(workspace)
    (workspace / "subscribers" / "idn.csv").write_text("email,name\n" + ROWS, encoding="utf-8")
    with FaultServer(smtputf8=False) as server:
        result = run("check", "2026-W48", "--list", "idn", env=env_for(server.url))
        with_utf8 = FaultServer(smtputf8=True)
    assert "Traceback" not in result.output
    assert (
        "  warning: smtputf8: 2 recipients with a non-ASCII local part (太郎@example.jp, "
        f"花子@example.jp) will fail: SMTP relay {server.url} does not offer SMTPUTF8 (they "
        "are not suppressed; send them through a relay that offers it)"
    ) in result.output.splitlines()
    with with_utf8 as server:
        fine = run("check", "2026-W48", "--list", "idn", env=env_for(server.url))
    assert "smtputf8" not in fine.output
