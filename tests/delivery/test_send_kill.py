"""A send killed with SIGKILL mid-way, then rerun: everyone gets it, duplicates only
among the deliveries the rerun reports as uncertain."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from delivery_draft import write_draft_folder
from digest_mail.config import find_workspace
from ledger_rows import child_env, wait_until_no_sender, workspace_ledger
from smtpserver import SmtpServer, parse_message

COUNT = 5000
CLI = [sys.executable, "-m", "digest_mail"]


def write_big_list(root: Path) -> list[str]:
    addresses = [f"kill{i:05d}@example.{('jp', 'com', 'net')[i % 3]}" for i in range(COUNT)]
    rows = ["email,name,status,subscribed_at"]
    rows += [f"{a},読者 {i}号,subscribed,2026-01-01" for i, a in enumerate(addresses)]
    (root / "subscribers" / "big.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return addresses


def cli_env(server: SmtpServer) -> dict[str, str]:
    env = child_env()
    env.update(
        DIGEST_MAIL_SMTP_URL=server.url,
        DIGEST_MAIL_SMTP_CONCURRENCY="8",
        DIGEST_MAIL_SECRET="kill-test-secret-0123456789",
    )
    return env


def start_until_received(
    command: list[str], cwd: Path, env: dict[str, str], server: SmtpServer, count: int
) -> subprocess.Popen[bytes]:
    """Start the CLI and return once the server has received ``count`` messages."""
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while len(server.handler.received) < count:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "the send did not get going"
        time.sleep(0.005)  # polling a real process; nothing under test waits on this
    return proc


@pytest.mark.slow
def test_sigkill_mid_send_then_rerun_delivers_everyone_once_except_uncertain(
    workspace: Path, smtp_server: SmtpServer, ledger_kind: str
) -> None:
    write_draft_folder(workspace)
    addresses = write_big_list(workspace)
    smtp_server.handler.parse = False
    env = cli_env(smtp_server)
    send = [*CLI, "send", "2026-W48", "--list", "big", "--yes", "--json"]
    proc = start_until_received(send, workspace, env, smtp_server, COUNT // 3)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = len(smtp_server.received)
    assert killed_at < COUNT

    ws = find_workspace(workspace)
    with workspace_ledger(ws) as ledger:
        in_flight = ledger.execute(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'sending'"
        ).fetchone()[0]
    assert 0 < in_flight <= 200, "at most the claimed batch is in doubt"

    # Right after the crash, before any rerun, status tells what was in flight.
    wait_until_no_sender(ws, "2026-W48/big", time.monotonic() + 30)
    status = subprocess.run(
        [*CLI, "status", "2026-W48/big"], cwd=workspace, env=env, capture_output=True, timeout=60
    )
    lines = status.stdout.decode().splitlines()
    with workspace_ledger(ws) as ledger:
        sent_so_far = ledger.execute(
            "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'"
        ).fetchone()[0]
    print(f"\nstatus after kill -9: {lines[1].strip()}")
    assert lines[1] == (
        f"  {sent_so_far} sent, {COUNT - sent_so_far - in_flight} queued, 0 deferred, "
        f"0 failed, 0 suppressed, 0 skipped-invalid, {in_flight} uncertain"
    )
    assert f"  Stopped: no sender is running: {in_flight} were in flight when it died" in lines
    assert lines[-2:] == [
        "  Resume: digest-mail send 2026-W48 --list big",
        "  Resend the uncertain ones: digest-mail send 2026-W48 --list big --resend-uncertain",
    ]

    rerun = subprocess.run(send, cwd=workspace, env=env, capture_output=True, timeout=120)
    report = json.loads(rerun.stdout)
    assert rerun.returncode == 5  # uncertain: only the in-flight rows are left for a decision
    assert "--resend-uncertain" in rerun.stderr.decode()
    uncertain = set(report["uncertain_addresses"])
    assert len(uncertain) == report["uncertain"] == in_flight
    assert report["sent"] + report["uncertain"] == COUNT

    counts = smtp_server.counts()
    doubled = {a for a, n in counts.items() if n > 1}
    assert doubled == set(), "a normal rerun never resends"
    missing = set(addresses) - set(counts)
    assert missing <= uncertain, "only uncertain ones may still be missing"

    final = subprocess.run(
        [*send, "--resend-uncertain"], cwd=workspace, env=env, capture_output=True, timeout=120
    )
    assert final.returncode == 0, final.stderr.decode()
    done = json.loads(final.stdout)
    assert (done["sent"], done["uncertain"], done["complete"]) == (COUNT, 0, True)

    counts = smtp_server.counts()
    assert set(counts) == set(addresses), "every address delivered"
    doubled = {a for a, n in counts.items() if n > 1}
    assert doubled <= uncertain, "duplicates only among the reported uncertain ones"
    # The CLI processes used the test's ledger: on PostgreSQL, no SQLite file was made.
    assert ws.ledger_path.exists() == (ledger_kind == "sqlite")
    assert max(counts.values()) <= 2
    # Spot-check content: the right person's message, one Message-ID per delivery row.
    for item in smtp_server.received[:: COUNT // 25]:
        msg = parse_message(item.data)
        assert msg["To"].addresses[0].addr_spec == item.recipients[0]
        assert msg["Subject"].startswith("Chrysanthemum Digest 2026-W48")


def test_ctrl_c_finishes_in_flight_messages_and_leaves_nothing_uncertain(
    workspace: Path, smtp_server: SmtpServer
) -> None:
    write_draft_folder(workspace)
    addresses = write_big_list(workspace)[:1000]
    rows = ["email,name"] + [f"{a},読者" for a in addresses]
    (workspace / "subscribers" / "big.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    smtp_server.handler.parse = False
    env = cli_env(smtp_server)
    send = [*CLI, "send", "2026-W48", "--list", "big", "--yes"]
    proc = start_until_received(send, workspace, env, smtp_server, 200)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3  # stopped: interrupted, nothing held against readers
    lines = err.decode().splitlines()
    assert "Error: interrupted: in-flight messages were finished, the rest is queued" in lines
    assert "Hint: rerun 'digest-mail send 2026-W48 --list big' to resume" in lines
    assert out.decode().startswith("Stopped 2026-W48 to big: ")

    ws = find_workspace(workspace)
    with workspace_ledger(ws) as ledger:
        by_state = dict(
            ledger.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall()
        )
    assert "sending" not in by_state and "uncertain" not in by_state
    # Exactly what the server accepted is recorded as sent: nothing in doubt.
    assert by_state["sent"] == len(smtp_server.received) < len(addresses)

    rerun = subprocess.run(send, cwd=workspace, env=env, capture_output=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr.decode()
    counts = smtp_server.counts()
    assert set(counts) == set(addresses) and set(counts.values()) == {1}


def test_second_ctrl_c_abandons_a_stalled_send_and_reports_in_flight_as_uncertain(
    workspace: Path, smtp_server: SmtpServer
) -> None:
    import threading

    write_draft_folder(workspace)
    addresses = write_big_list(workspace)[:300]
    rows = ["email,name"] + [f"{a},読者" for a in addresses]
    (workspace / "subscribers" / "big.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    smtp_server.handler.parse = False
    release = threading.Event()
    stalled = threading.Event()

    def stall(_: object) -> None:
        if len(smtp_server.handler.received) >= 50:
            stalled.set()
            release.wait(60)  # the relay stops answering DATA
        return None

    smtp_server.handler.data_reply = stall
    env = cli_env(smtp_server)
    send = [*CLI, "send", "2026-W48", "--list", "big", "--yes"]
    proc = subprocess.Popen(
        send, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert stalled.wait(60)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # a person pressing Ctrl-C again; the process is stuck on the relay
        assert proc.poll() is None, "the first Ctrl-C waits for in-flight messages"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3
    assert (
        "Error: interrupted twice: messages in flight were abandoned and are now uncertain"
        in err.decode().splitlines()
    )
    ws = find_workspace(workspace)
    with workspace_ledger(ws) as ledger:
        by_state = dict(
            ledger.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall()
        )
    assert "sending" not in by_state
    assert 1 <= by_state["uncertain"] <= 8  # at most one per connection was in flight
    assert by_state["sent"] == 50


@pytest.mark.slow
def test_sigkill_while_the_snapshot_is_written_then_rerun_completes_it_without_doubles(
    workspace: Path, smtp_server: SmtpServer
) -> None:
    # 60,000 rows, one in 30 subscribed: the writer needs a good part of a second for
    # the list, while the first message goes out after its first 250 rows.
    write_draft_folder(workspace)
    rows = ["email,name,status"]
    addresses = []
    for i in range(60_000):
        address = f"snap{i:05d}@example.jp"
        subscribed = i % 30 == 7
        rows.append(f"{address},読者 {i}号,{'subscribed' if subscribed else 'unsubscribed'}")
        if subscribed:
            addresses.append(address)
    (workspace / "subscribers" / "big.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    smtp_server.handler.parse = False
    env = cli_env(smtp_server)
    send = [*CLI, "send", "2026-W48", "--list", "big", "--yes", "--json"]
    proc = start_until_received(send, workspace, env, smtp_server, 1)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)

    ws = find_workspace(workspace)
    wait_until_no_sender(ws, "2026-W48/big", time.monotonic() + 30)
    with workspace_ledger(ws) as ledger:
        state = ledger.execute("SELECT state FROM campaigns").fetchone()[0]
        written = ledger.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
    assert state == "snapshotting" and written < len(addresses)

    rerun = subprocess.run(send, cwd=workspace, env=env, capture_output=True, timeout=120)
    report = json.loads(rerun.stdout)
    uncertain = set(report["uncertain_addresses"])
    assert report["sent"] + report["uncertain"] == len(addresses)
    assert report["total"] == len(addresses)
    counts = smtp_server.counts()
    assert {a for a, n in counts.items() if n > 1} == set(), "a normal rerun never resends"
    assert set(addresses) - set(counts) <= uncertain
    assert set(counts) <= set(addresses), "an unsubscribed reader got the edition"

    final = subprocess.run(
        [*send, "--resend-uncertain"], cwd=workspace, env=env, capture_output=True, timeout=120
    )
    assert final.returncode == 0, final.stderr.decode()
    done = json.loads(final.stdout)
    assert (done["sent"], done["uncertain"], done["complete"]) == (len(addresses), 0, True)
    counts = smtp_server.counts()
    assert set(counts) == set(addresses)
    assert {a for a, n in counts.items() if n > 1} <= uncertain
