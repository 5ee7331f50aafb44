"""Several schedulers on one ledger (issue 18): run-due and the daemon on several hosts
claim each slot once, the database decides (the slot's primary key, the schedule's
session lock in the ledger), and a host that dies mid-send is taken over by the next
run-due on another host.

Every test runs on both ledgers. A "host" is a workspace folder of its own with the same
settings, drafts and lists; the second one reaches the first one's ledger through
``DIGEST_MAIL_LEDGER_URL`` (the PostgreSQL database of the test, or the first host's
SQLite file by an absolute URL, whose locks lie beside it). The processes are real, the
relay is a real aiosmtpd server; waits poll with deadlines."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digest_mail.audience.csvfiles import scan_list
from digest_mail.audience.rows import Recipient
from digest_mail.ledger.db import open_ledger
from digest_mail.ledger.schedule_runs import claim_slot, list_runs
from schedule_helpers import compose_draft, set_schedules, weekly, workspace_of
from smtpserver import SmtpServer

SLOT = "2026-11-29T23:00:00+00:00"  # Monday 2026-11-30 08:00 in Tokyo
LOCK = "schedule:weekly"


def subscribed(root: Path, name: str = "weekly") -> set[str]:
    return {
        r.email.lower()
        for r in scan_list(root / "subscribers" / f"{name}.csv")
        if isinstance(r, Recipient) and r.status == "subscribed"
    }


def runs(root: Path) -> list[tuple[str, str, str | None]]:
    with open_ledger(workspace_of(root)) as ledger:
        return [(r.slot, r.state, r.edition) for r in list_runs(ledger, "weekly")]


def approved(root: Path, run: Callable[..., object], edition: str = "2026-W48") -> None:
    compose_draft(root, edition, title="トランプ再選で変わる世界? 同盟と核軍縮のゆくえ")
    assert run("approve", edition).exit_code == 0  # type: ignore[attr-defined]


def second_host(first: Path, root: Path, ledger_kind: str) -> dict[str, str]:
    """Another host's workspace at ``root``: the first one's settings, drafts and lists,
    not its var/ (its own locks and files), on the same ledger. Returns its environment."""
    shutil.copytree(first, root, ignore=shutil.ignore_patterns("var", "outbox"))
    env = dict(os.environ)
    if ledger_kind == "sqlite":
        env["DIGEST_MAIL_LEDGER_URL"] = f"sqlite:///{first / 'var' / 'ledger.sqlite3'}"
    return env


def start(root: Path, args: list[str], env: dict[str, str], **kw: object) -> subprocess.Popen[str]:
    """digest-mail in ``root``, in a session of its own (a host: killed all at once)."""
    return subprocess.Popen(
        [sys.executable, "-m", "digest_mail", *args],
        cwd=root,
        env=env,
        text=True,
        start_new_session=True,
        **kw,  # type: ignore[call-overload]
    )


def until(condition: Callable[[], bool], what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def relay() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


def stall_first_message(server: SmtpServer) -> tuple[threading.Event, threading.Event]:
    """The first message waits at DATA until ``release`` is set (then is accepted): the
    sender is caught mid-send. Returns (stalled, release)."""
    stalled, release = threading.Event(), threading.Event()

    def data_reply(envelope: object) -> str | None:
        if not stalled.is_set():
            stalled.set()
            release.wait(60)
        return None

    server.handler.data_reply = data_reply
    return stalled, release


def test_the_slot_claim_is_once_across_connections_under_real_concurrency(
    workspace: Path, ledger_kind: str
) -> None:
    ws = workspace_of(workspace)
    open_ledger(ws).close()  # the schema, before the race
    slot = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    contenders = 8
    barrier = threading.Barrier(contenders)
    won: list[bool] = []

    def contender() -> None:
        with open_ledger(ws) as ledger:
            barrier.wait()
            won.append(
                claim_slot(
                    ledger, "weekly", slot, state="claimed", edition="2026-W48", note="", now=slot
                )
            )

    threads = [threading.Thread(target=contender) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False] * (contenders - 1) + [True]
    assert runs(workspace) == [(SLOT, "claimed", "2026-W48")]
    with open_ledger(ws) as ledger:
        assert ledger.kind == ledger_kind
        assert not claim_slot(
            ledger, "weekly", slot, state="skipped", edition=None, note="", now=slot
        )


def test_a_schedule_locked_by_another_connection_is_left_alone_then_sent(
    workspace: Path, run, ledger_kind: str
) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    # The schedule's lock is the ledger's: another host holding it is seen from here.
    with open_ledger(workspace_of(workspace)) as elsewhere:
        assert elsewhere.try_lock(LOCK)
        busy = run("schedule", "run-due", "--now", SLOT)
        assert busy.exit_code == 0
        assert ": busy: another digest-mail process is running this schedule now" in busy.output
        assert runs(workspace) == []
        elsewhere.unlock(LOCK)
        sent = run("schedule", "run-due", "--now", SLOT)
        assert ": sent: sent 2026-W48 to weekly: 31 sent," in sent.output
        # Released when the run ends.
        assert not elsewhere.is_locked(LOCK)
    assert runs(workspace) == [(SLOT, "sent", "2026-W48")]


def test_two_run_due_processes_on_one_slot_send_it_once(
    workspace: Path, run, relay: SmtpServer, ledger_kind: str
) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    stalled, release = stall_first_message(relay)
    env = dict(os.environ, DIGEST_MAIL_SMTP_URL=relay.url)
    args = ["schedule", "run-due", "--now", SLOT]
    processes = [start(workspace, args, env, stdout=subprocess.PIPE) for _ in range(2)]
    try:
        assert stalled.wait(60), "no run-due reached the relay"
        # The sender is held mid-send until the other run-due has given up on the slot.
        until(lambda: any(p.poll() is not None for p in processes), "the other run-due")
    finally:
        release.set()
    outputs = [p.communicate(timeout=60)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    sent = [out for out in outputs if ": sent: sent 2026-W48 to weekly: 31 sent," in out]
    taken = [out for out in outputs if ": busy: another digest-mail process is running" in out]
    assert (len(sent), len(taken)) == (1, 1), outputs
    counts = relay.counts()
    assert set(counts) == subscribed(workspace)
    assert set(counts.values()) == {1}
    assert runs(workspace) == [(SLOT, "sent", "2026-W48")]


def test_a_host_killed_mid_send_is_taken_over_by_run_due_on_another_host(
    workspace: Path, run, relay: SmtpServer, tmp_path: Path, ledger_kind: str
) -> None:
    set_schedules(workspace, weekly())
    approved(workspace, run)
    accept_first = 5
    stalled, release = threading.Event(), threading.Event()
    seen = [0]

    def data_reply(envelope: object) -> str | None:
        # The sixth message hangs until its host is dead: it was in flight.
        seen[0] += 1
        if seen[0] <= accept_first:
            return None
        stalled.set()
        release.wait(60)
        return "451 4.3.0 the client went away"

    relay.handler.data_reply = data_reply
    env = dict(os.environ, DIGEST_MAIL_SMTP_URL=relay.url, DIGEST_MAIL_SMTP_CONCURRENCY="1")
    other_env = second_host(workspace, tmp_path / "host-b", ledger_kind)
    other_env.update(DIGEST_MAIL_SMTP_URL=relay.url, DIGEST_MAIL_SMTP_CONCURRENCY="1")
    first = start(workspace, ["schedule", "run-due", "--now", SLOT], env)
    try:
        assert stalled.wait(60), "the first host never reached the sixth message"
        os.killpg(first.pid, signal.SIGKILL)  # host A loses power mid-send
        first.wait(30)
    finally:
        release.set()
    relay.handler.data_reply = None
    first_run = relay.counts()
    assert sum(first_run.values()) == accept_first
    assert runs(workspace) == [(SLOT, "sending", "2026-W48")]
    with open_ledger(workspace_of(workspace)) as ledger:
        # The dead host's lock goes with it (its file handle, or its database session).
        until(lambda: not ledger.is_locked(LOCK), "the dead host's lock to go", 15)

    taken_over = start(
        tmp_path / "host-b",
        ["schedule", "run-due", "--now", "2026-11-30T08:01:00+09:00", "--json"],
        other_env,
        stdout=subprocess.PIPE,
    )
    out, _ = taken_over.communicate(timeout=60)
    (outcome,) = json.loads(out)
    assert outcome["action"] == "sent", outcome
    assert outcome["message"].startswith("resumed and sent 2026-W48 to weekly")
    report = outcome["report"]
    counts = relay.counts()
    assert set(counts.values()) == {1}, "somebody received the edition twice"
    # Host A's batch in flight when it died is uncertain (resending it is the operator's
    # choice, never run-due's): host B sent none of it, and everyone else exactly once.
    uncertain = {a.lower() for a in report["uncertain_addresses"]}
    assert report["uncertain"] >= 1
    assert set(counts) | uncertain == subscribed(workspace)
    assert not (set(counts) - set(first_run)) & uncertain
    assert set(first_run) <= set(counts)
    assert runs(workspace) == [(SLOT, "sent", "2026-W48")]
    assert not (tmp_path / "host-b" / "var" / "ledger.sqlite3").exists()
    if ledger_kind == "postgresql":
        assert not (workspace / "var" / "ledger.sqlite3").exists()


def test_daemons_on_two_hosts_send_a_slot_once(
    workspace: Path, run, relay: SmtpServer, tmp_path: Path, ledger_kind: str
) -> None:
    # A daily slot an hour ago (well within late_after): both daemons find it due at
    # once, whatever minute the test starts in, and the next one is a day away.
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    set_schedules(
        workspace,
        weekly(cron=f"{hour_ago.minute} {hour_ago.hour} * * *", timezone="UTC", late_after="6h"),
    )
    approved(workspace, run)
    stalled, release = stall_first_message(relay)
    env = dict(os.environ, DIGEST_MAIL_SMTP_URL=relay.url)
    hosts = [
        (workspace, env),
        (tmp_path / "host-b", second_host(workspace, tmp_path / "host-b", ledger_kind)),
    ]
    hosts[1][1]["DIGEST_MAIL_SMTP_URL"] = relay.url
    logs = [tmp_path / "daemon-a.log", tmp_path / "daemon-b.log"]
    daemons: list[subprocess.Popen[str]] = []

    def text() -> list[str]:
        return [log.read_text(encoding="utf-8") if log.exists() else "" for log in logs]

    try:
        for (root, host_env), log in zip(hosts, logs, strict=True):
            with log.open("w") as out:
                daemons.append(start(root, ["schedule", "daemon"], host_env, stdout=out))
        assert stalled.wait(60), text()
        # One daemon sends (held mid-send); the other finds the schedule taken.
        until(lambda: any(": busy: " in t for t in text()), "the other daemon's run")
        release.set()
        until(
            lambda: any(": sent: sent 2026-W48 to weekly: 31 sent," in t for t in text()),
            "the send",
        )
    finally:
        release.set()
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            daemon.wait(60)
    assert [d.returncode for d in daemons] == [0, 0], text()
    logged = text()
    assert sum(": sent: sent 2026-W48 to weekly: 31 sent," in t for t in logged) == 1, logged
    assert sum(": busy: another digest-mail process is running" in t for t in logged) == 1, logged
    counts = relay.counts()
    assert set(counts) == subscribed(workspace)
    assert set(counts.values()) == {1}
    (row,) = runs(workspace)
    assert row[1:] == ("sent", "2026-W48")
