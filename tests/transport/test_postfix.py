"""Against a real Postfix (the suite's own instance, tests/postfix.py): virtual mailboxes,
an unknown user refused at RCPT, a sender refusal reported at RCPT (the default
smtpd_delay_reject = yes), a temporary 450, and deliveries that fail after acceptance
with Postfix's own DSNs imported as bounces.

Each test has its own envelope sender and readers, so the session's one instance serves
them all. Where Postfix cannot run (not root, not installed) these tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import Runner
from delivery_draft import SAMPLE_DRAFT, write_draft_folder
from digest_mail.config import find_workspace
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.suppressions import is_suppressed, list_suppressions
from postfix import PostfixInstance

pytestmark = pytest.mark.postfix


def prepare(workspace: Path, sender: str, readers: list[str]) -> dict[str, str]:
    write_draft_folder(workspace)
    rows = ["email,name"] + [f"{r},読者 {i}" for i, r in enumerate(readers)]
    (workspace / "subscribers" / "pf.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return {
        "DIGEST_MAIL_NEWSLETTER_FROM": f"Chrysanthemum Digest <{sender}>",
        "DIGEST_MAIL_SECRET": "postfix-test-secret-0123456789",
    }


def states(workspace: Path) -> tuple[dict[str, int], int]:
    ws = find_workspace(workspace)
    with Ledger(ws.ledger_path) as ledger:
        by_state = dict(
            ledger.execute(
                "SELECT state, COUNT(*) FROM deliveries WHERE campaign_id = '2026-W48/pf' "
                "GROUP BY state"
            ).fetchall()
        )
        suppressed = ledger.execute("SELECT COUNT(*) FROM suppressions").fetchone()[0]
    return by_state, suppressed


def configure(postfix: PostfixInstance, **maps: list[str]) -> None:
    for name, lines in maps.items():
        postfix.write_map(name, lines)
    postfix.reload()


def test_virtual_mailboxes_get_one_copy_and_an_unknown_user_fails_alone(
    workspace: Path, run: Runner, postfix: PostfixInstance
) -> None:
    readers = [f"pf-ok{i}@example.jp" for i in range(12)]
    unknown = "pf-nobody@example.jp"
    env = prepare(workspace, "pf-a@example.jp", [*readers[:6], unknown, *readers[6:]])
    configure(postfix, vmailbox=[f"{r} example.jp/{r.partition('@')[0]}/" for r in readers])
    postfix.wait(
        lambda: postfix.accepts("open", "pf-a@example.jp", readers[-1]), what="took the maps"
    )
    result = run("send", "2026-W48", "--list", "pf", "--yes", env={**env, **url(postfix)})
    print(f"\npostfix 5.1.1 run: exit {result.exit_code}: {result.output.splitlines()[0]}")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        f"Sent 2026-W48 to pf: {len(readers)} sent, 0 deferred, 1 failed, 0 suppressed, "
        "0 skipped-invalid",
        f"  {unknown}: 550 5.1.1 <{unknown}>: Recipient address rejected: User unknown in "
        "virtual mailbox table",
    ]
    postfix.wait(
        lambda: all(len(postfix.delivered(r)) == 1 for r in readers), what="delivered them all"
    )
    for reader in readers:
        (stored,) = postfix.delivered(reader)
        message = message_from_bytes(stored.read_bytes(), policy=policy.default)
        assert message["To"].addresses[0].addr_spec == reader
        assert message["Subject"] == SAMPLE_DRAFT.subject
        assert not message.defects
    by_state, suppressed = states(workspace)
    assert (by_state, suppressed) == ({"sent": len(readers), "failed": 1}, 1)
    ws = find_workspace(workspace)
    with Ledger(ws.ledger_path) as ledger:
        assert is_suppressed(ledger, unknown)


def url(postfix: PostfixInstance, service: str = "open") -> dict[str, str]:
    return {"DIGEST_MAIL_SMTP_URL": postfix.url(service)}


def test_a_sender_refused_at_rcpt_stops_suppresses_nobody_and_the_rerun_delivers(
    workspace: Path, run: Runner, postfix: PostfixInstance
) -> None:
    sender = "pf-b@example.jp"
    readers = [f"pf-sr{i}@example.jp" for i in range(10)]
    env = {**prepare(workspace, sender, readers), **url(postfix, "sender")}
    configure(
        postfix,
        vmailbox=[f"{r} example.jp/{r.partition('@')[0]}/" for r in readers],
        sender_access=[f"{sender} REJECT not owned by user taro"],
    )
    postfix.wait(lambda: not postfix.accepts("sender", sender, readers[0]), what="took the map")
    result = run("send", "2026-W48", "--list", "pf", "--yes", env=env)
    lines = result.output.splitlines()
    by_state, suppressed = states(workspace)
    print(
        f"\npostfix sender refusal: exit {result.exit_code}; {lines[1]}; "
        f"{suppressed} suppressed, {by_state.get('queued', 0)} queued"
    )
    assert result.exit_code == 3, result.output
    assert lines[1] == (
        f"Error: {postfix.url('sender')} refused us at RCPT TO: 554 5.7.1 <{sender}>: Sender "
        "address rejected: not owned by user taro"
    )
    assert lines[2].startswith("Hint: check [newsletter] from and the relay's sender policy")
    assert len(lines) == 3
    assert (by_state, suppressed) == ({"queued": len(readers)}, 0)

    # The relay's policy is fixed; the rerun delivers each reader exactly once.
    configure(postfix, sender_access=[])
    postfix.wait(lambda: postfix.accepts("sender", sender, readers[0]), what="took the fix")
    rerun = run("send", "2026-W48", "--list", "pf", "--yes", "--json", env=env)
    assert rerun.exit_code == 0, rerun.output
    report = json.loads(rerun.output)
    postfix.wait(
        lambda: all(len(postfix.delivered(r)) == 1 for r in readers), what="delivered them all"
    )
    delivered = sum(len(postfix.delivered(r)) for r in readers)
    print(f"postfix sender refusal rerun: {report['sent_this_run']} sent, {delivered} delivered")
    assert (report["sent_this_run"], delivered) == (len(readers), len(readers))
    assert states(workspace) == ({"sent": len(readers)}, 0)


def test_a_temporary_450_defers_and_exits_4(
    workspace: Path, run: Runner, postfix: PostfixInstance
) -> None:
    readers = ["pf-t1@example.jp", "pf-later@example.jp", "pf-t2@example.jp"]
    env = {**prepare(workspace, "pf-c@example.jp", readers), **url(postfix)}
    env["DIGEST_MAIL_SMTP_RETRY_FOR"] = "0s"
    configure(
        postfix,
        vmailbox=[f"{r} example.jp/{r.partition('@')[0]}/" for r in readers],
        recipient_access=["pf-later@example.jp 450 4.2.0 try again later"],
    )
    postfix.wait(
        lambda: not postfix.accepts("open", "pf-c@example.jp", readers[1]), what="took the map"
    )
    result = run("send", "2026-W48", "--list", "pf", "--yes", env=env)
    assert result.exit_code == 4, result.output
    assert result.output.splitlines()[1] == (
        "  pf-later@example.jp: 450 4.2.0 <pf-later@example.jp>: Recipient address rejected: "
        "try again later"
    )
    assert states(workspace) == ({"sent": 2, "deferred": 1}, 0)


def test_failures_after_acceptance_come_back_as_postfix_dsns_and_import(
    workspace: Path, run: Runner, postfix: PostfixInstance
) -> None:
    sender = "pf-d@example.jp"
    readers = ["pf-fine@example.jp", "pf-gone@example.jp", "pf-busy@example.jp"]
    env = {**prepare(workspace, sender, readers), **url(postfix)}
    later = ["pf-gone@example.jp", "pf-busy@example.jp"]
    configure(
        postfix,
        vmailbox=[f"{r} example.jp/{r.partition('@')[0]}/" for r in [sender, *readers]],
        transport=[f"{r} smtp:[127.0.0.1]:{postfix.ports['inner']}" for r in later],
        # The inner hop knows neither: gone is unknown there (5.1.1), busy is deferred.
        inner_access=["pf-busy@example.jp 450 4.2.2 mailbox busy, try later"],
    )
    postfix.wait(lambda: postfix.accepts("open", sender, readers[1]), what="took the maps")
    result = run("send", "2026-W48", "--list", "pf", "--yes", env=env)
    assert result.exit_code == 0, result.output
    assert states(workspace) == ({"sent": 3}, 0)  # accepted at RCPT: sent, as far as we know
    # Postfix reports: a bounce for gone; a delay warning, then the expiry, for busy.
    postfix.wait(lambda: len(postfix.delivered(sender)) == 3, timeout=90, what="sent 3 DSNs")
    dsns = postfix.maildir(sender)
    imported = run("bounces", "import", str(dsns), env=env)
    print(f"\npostfix DSN import: {imported.output.splitlines()[-1]}")
    assert imported.exit_code == 0, imported.output
    events = sorted(imported.output.splitlines()[:-1])
    assert len(events) == 3, imported.output
    assert events[0].startswith("pf-busy@example.jp: delay warning 4.2.2: still being retried, not")
    assert events[1].startswith("pf-busy@example.jp: soft bounce 4.2.2 (1 in 30 days): recorded")
    assert events[2].startswith("pf-gone@example.jp: hard bounce 5.1.1: suppressed")
    ws = find_workspace(workspace)
    with Ledger(ws.ledger_path) as ledger:
        assert [s.address for s in list_suppressions(ledger)] == ["pf-gone@example.jp"]
    again = run("bounces", "import", str(dsns), "--json", env=env)
    assert json.loads(again.output)["suppressed"] == 0


def test_a_private_ca_is_refused_until_ca_file_trusts_it(
    workspace: Path, postfix: PostfixInstance
) -> None:
    readers = ["pf-tls1@example.jp", "pf-tls2@example.jp"]
    env = prepare(workspace, "pf-e@example.jp", readers)
    env["DIGEST_MAIL_SMTP_URL"] = f"{postfix.url('tls')}?tls=starttls"
    configure(postfix, vmailbox=[f"{r} example.jp/{r.partition('@')[0]}/" for r in readers])
    shutil.copy(postfix.certificate, workspace / "relay-ca.pem")
    # The CLI in its own process: a refused handshake's teardown may outlive the loop.
    untrusted = cli(workspace, env, "send", "2026-W48", "--list", "pf", "--yes")
    assert untrusted.returncode == 3, untrusted.stdout + untrusted.stderr
    error, hint = untrusted.stderr.splitlines()[-2:]
    assert "TLS failed" in error and "certificate verify failed" in error
    assert hint.startswith(
        "Hint: the relay's certificate is not trusted here: if a private CA signed it, set "
        "[smtp] ca_file to that CA's PEM file (or SSL_CERT_FILE)"
    )
    assert states(workspace) == ({"queued": 2}, 0)
    trusted = cli(
        workspace,
        {**env, "DIGEST_MAIL_SMTP_CA_FILE": "relay-ca.pem"},
        *("send", "2026-W48", "--list", "pf", "--yes"),
    )
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    postfix.wait(lambda: all(len(postfix.delivered(r)) == 1 for r in readers), what="delivered")
    assert "TLS connection established" in postfix.log()


def cli(workspace: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("digest-mail")), *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAIL_")},
            **env,
            "DIGEST_MAIL_WORKSPACE": str(workspace),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_list_nobody_of_which_exists_trips_the_breaker(
    workspace: Path, run: Runner, postfix: PostfixInstance
) -> None:
    # A relay pointed at the wrong mailbox table refuses everyone as unknown: a relay
    # problem, not a list to suppress.
    readers = [f"pf-ghost{i}@example.jp" for i in range(15)]
    env = {**prepare(workspace, "pf-f@example.jp", readers), **url(postfix)}
    env["DIGEST_MAIL_SMTP_CONCURRENCY"] = "1"
    configure(postfix, vmailbox=[])
    postfix.wait(
        lambda: not postfix.accepts("open", "pf-f@example.jp", readers[0]), what="took the map"
    )
    result = run("send", "2026-W48", "--list", "pf", "--yes", env=env)
    assert result.exit_code == 3, result.output
    assert result.output.splitlines()[1].startswith(
        "Error: circuit breaker: 10 of the first 10 recipients were refused (last: 550 5.1.1 "
    )
    assert states(workspace) == ({"queued": len(readers)}, 0)


def test_test_send_opens_one_connection(
    workspace: Path, run: Runner, postfix: PostfixInstance
) -> None:
    readers = ["pf-staff1@example.jp"]
    env = {**prepare(workspace, "pf-g@example.jp", readers), **url(postfix)}
    configure(postfix, vmailbox=[f"{r} example.jp/{r.partition('@')[0]}/" for r in readers])
    postfix.wait(lambda: postfix.accepts("open", "pf-g@example.jp", readers[0]), what="maps")
    before = postfix.log().count("]: connect from localhost")
    result = run("test-send", "2026-W48", "--to", readers[0], env=env)
    assert result.exit_code == 0, result.output
    postfix.wait(lambda: len(postfix.delivered(readers[0])) == 1, what="delivered the test")
    assert postfix.log().count("]: connect from localhost") - before == 1
