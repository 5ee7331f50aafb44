"""Several senders on one campaign (issue 18): ``digest-mail send`` started on several
"hosts" at once against one PostgreSQL ledger shares the work.

Each sender is a real ``digest-mail send`` process with its own relay; they claim
disjoint batches (``FOR UPDATE SKIP LOCKED``), the snapshot is written once, and every
reader gets the edition once. A sender killed with SIGKILL leaves only the rows it had
claimed uncertain; the other finishes the campaign. On SQLite one process sends a
campaign at a time (test_send.py), so these tests are about the shared ledger only.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from chaos_helpers import env_for, write_list
from conftest import Runner
from digest_mail.config import find_workspace
from digest_mail.ledger.db import open_ledger
from digest_mail.render.draft import latest_draft
from faultserver import FAULTS, FaultPlan, FaultServer, check_against_ledger
from smtpserver import SmtpServer

DIGEST_MAIL = Path(sys.executable).with_name("digest-mail")


@pytest.fixture(autouse=True)
def _shared_ledger_only(ledger_kind: str) -> None:
    if ledger_kind != "postgresql":
        pytest.skip("several senders on one campaign need a shared (PostgreSQL) ledger")


def _env(url: str, root: Path) -> dict[str, str]:
    # The ledger's URL and password come from the test's environment (PostgreSQL).
    env = dict(os.environ)
    env.update(env_for(url))
    env["DIGEST_MAIL_SMTP_RETRY_BACKOFF"] = "0s"
    env["DIGEST_MAIL_WORKSPACE"] = str(root)
    return env


def _rows(root: Path, campaign_id: str) -> dict[str, tuple[str, bool, str]]:
    """address key -> (state, ever uncertain, sender)."""
    with open_ledger(find_workspace(root)) as ledger:
        rows = ledger.execute(
            "SELECT address, state, uncertain, sender FROM deliveries WHERE campaign_id = ?",
            (campaign_id,),
        ).fetchall()
    return {r[0]: (r[1], bool(r[2]), r[3]) for r in rows}


def _compose(run: Runner, root: Path) -> str:
    composed = run("compose", "articles/kyoto-crafts-successors.md")
    assert composed.exit_code == 0, composed.output
    return latest_draft(find_workspace(root)).id


def test_two_senders_with_their_own_relays_share_one_campaign(workspace: Path, run: Runner) -> None:
    edition = _compose(run, workspace)
    addresses = write_list(workspace / "subscribers" / "readers.csv", 2000)
    argv = [str(DIGEST_MAIL), "send", edition, "--list", "readers", "--yes"]
    relays = [SmtpServer().start(), SmtpServer().start()]
    try:
        procs = [
            subprocess.Popen(
                argv,
                # Each its own relay and rate: 300 msg/s keeps one sender alone on the
                # list for seconds, so both get a share however late the second starts.
                env={**_env(relay.url, workspace), "DIGEST_MAIL_SMTP_RATE": "300"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for relay in relays
        ]
        outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
        codes = [p.returncode for p in procs]
        counts = [relay.counts() for relay in relays]
    finally:
        for relay in relays:
            relay.stop()
    assert codes == [0, 0], outputs
    assert "Traceback" not in "".join(outputs)
    # Every reader exactly once, over both relays; each relay carried a share.
    together = counts[0] + counts[1]
    assert sorted(together) == sorted(a.lower() for a in addresses)
    assert set(together.values()) == {1}
    assert all(len(c) > 100 for c in counts), [len(c) for c in counts]
    # The snapshot was written once: one row per reader, every one sent.
    rows = _rows(workspace, f"{edition}/readers")
    assert len(rows) == 2000 and {state for state, _, _ in rows.values()} == {"sent"}
    # Status: the campaign as a whole, and per sender with its relay.
    status = json.loads(run("status", f"{edition}/readers", "--json").output)
    (report,) = status
    assert (report["sent"], report["total"], report["complete"]) == (2000, 2000, True)
    shares = {s["relay"].rsplit(":", 1)[1]: s["sent"] for s in report["senders"]}
    assert shares == {
        relay.url.rsplit(":", 1)[1]: len(c) for relay, c in zip(relays, counts, strict=True)
    }
    text = run("status", f"{edition}/readers").output
    assert "  Senders:" in text and text.count(" (finished via SMTP relay ") == 2, text


@pytest.mark.slow
def test_one_of_two_senders_killed_leaves_only_its_claim_uncertain(
    workspace: Path, run: Runner
) -> None:
    """The issue's chaos: two senders on one 5,000-reader campaign through a fault
    server, one SIGKILLed mid-send, the other finishing, then a rerun: every address
    accepted exactly once, except the ones reported uncertain."""
    edition = _compose(run, workspace)
    write_list(workspace / "subscribers" / "chaos.csv", 5000)
    campaign = f"{edition}/chaos"
    rng = random.Random(18_2026)
    plan = FaultPlan(seed=18_2026, rate=0.10)
    argv = [str(DIGEST_MAIL), "send", edition, "--list", "chaos", "--yes"]
    deadline = time.monotonic() + 150
    with FaultServer(plan) as server:
        env = _env(server.url, workspace)
        recorder = server.recorder
        victim, survivor = (
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(2)
        )
        kill_at = rng.randint(1000, 2000)
        while len(recorder.accepted) < kill_at:
            assert victim.poll() is None, victim.communicate()[0].decode()
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.005)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        assert victim.stdout is not None
        victim.stdout.close()
        out = survivor.communicate(timeout=max(1.0, deadline - time.monotonic()))[0].decode()
        # The survivor finished the campaign; what the victim had in flight is uncertain.
        assert survivor.returncode in (0, 4, 5), out
        assert "Traceback" not in out
        after_kill = _rows(workspace, campaign)
        in_doubt = {i.recipient.lower() for i in recorder.injected if FAULTS[i.fault].uncertain}
        senders = Counter(sender for _, _, sender in after_kill.values())
        victim_id = next(s for s in senders if s.split("/")[1] == str(victim.pid))
        survivor_id = next(s for s in senders if s.split("/")[1] == str(survivor.pid))
        assert senders[victim_id] > 500 and senders[survivor_id] > 500, senders
        orphaned = {
            key
            for key, (state, _, sender) in after_kill.items()
            if state == "uncertain" and key not in in_doubt
        }
        # Only the victim's claim went uncertain, never the survivor's rows: what it had
        # in flight (8 connections), its queue (claims of 32 rows, refilled below 16) and
        # retries that had just fallen due: a few dozen of 5,000.
        assert {after_kill[key][2] for key in orphaned} <= {victim_id}, orphaned
        assert len(orphaned) <= 200, len(orphaned)
        assert {state for state, _, _ in after_kill.values()} <= {
            "sent",
            "failed",
            "uncertain",
            "deferred",
        }
        if orphaned:
            assert f"{sum(s == 'uncertain' for s, _, _ in after_kill.values())} uncertain" in out
        # Then a rerun (resending what is uncertain) completes the campaign.
        for flags in ([], ["--resend-uncertain"], ["--resend-uncertain"]):
            rerun = subprocess.run(
                [*argv, *flags], env=env, capture_output=True, text=True, timeout=120
            )
            assert "Traceback" not in rerun.stdout + rerun.stderr
            rows = _rows(workspace, campaign)
            if rerun.returncode == 0 and {s for s, _, _ in rows.values()} <= {"sent", "failed"}:
                break
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert len(rows) == 5000
    sent = {key for key, (state, _, _) in rows.items() if state == "sent"}
    uncertain = {key for key, (_, ever, _) in rows.items() if ever}
    assert check_against_ledger(recorder, sent=sent, uncertain=uncertain) == []
    # Nobody was doubled outside what the ledger reported uncertain.
    doubled = {a for a, n in recorder.accepted_counts().items() if n > 1}
    assert doubled <= uncertain
    print(
        f"\ntwo senders, one killed at {kill_at} accepted: {len(orphaned)} orphaned in "
        f"flight, {len(uncertain)} uncertain in all, {len(doubled)} accepted twice"
    )
