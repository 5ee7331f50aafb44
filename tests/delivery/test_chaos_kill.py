"""Chaos with crashes: a real ``digest-mail send --yes`` process SIGKILLed at random points.

The same 5,000 recipients and 10 % seeded SMTP faults as test_chaos_send, but the sender
is killed several times (once early, during start-up or the snapshot, then after a random
number of accepted messages) and rerun until the campaign completes; the last run adds
``--resend-uncertain`` for whatever the crashes left in flight. In the end every
recipient is sent or failed, the server accepted exactly the set the ledger calls sent,
and only recipients the ledger reported uncertain may have been accepted twice.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaos_helpers import deliveries, env_for, write_list
from conftest import Runner
from digest_mail.config import find_workspace
from digest_mail.render.draft import latest_draft
from faultserver import FAULTS, FaultPlan, FaultServer, Recorder, check_against_ledger
from ledger_rows import child_env

RECIPIENTS = 5000
SEED = 7_2026
KILLS = 4
DIGEST_MAIL = Path(sys.executable).with_name("digest-mail")


def _env(url: str, root: Path) -> dict[str, str]:
    env = child_env()
    env.update(env_for(url))
    env["DIGEST_MAIL_SMTP_RETRY_BACKOFF"] = "0s"
    env["DIGEST_MAIL_WORKSPACE"] = str(root)
    return env


def _run_until(
    argv: list[str], env: dict[str, str], kill_when: object, deadline: float
) -> tuple[int | None, str]:
    """Run ``argv``; SIGKILL it when ``kill_when()`` turns true. (returncode or None, stdout)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started = time.monotonic()
    try:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError("send did not finish in time")
            if callable(kill_when) and kill_when():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                print(f"killed after {time.monotonic() - started:.1f} s")
                return None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.005)
        out = proc.stdout.read().decode() if proc.stdout else ""
        print(f"run {argv[-1]}: exit {proc.returncode} after {time.monotonic() - started:.1f} s")
        return proc.returncode, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _left_in_doubt(recorder: Recorder, plan: FaultPlan) -> set[str]:
    """Recipients the server left without a reply after their message (a stall, a drop
    during or after it): the only ones a run that was not killed may report uncertain."""
    return {i.recipient.lower() for i in recorder.injected if FAULTS[i.fault].uncertain}


def _refused_since(recorder: Recorder, start: int) -> set[str]:
    with recorder.lock:
        injected = recorder.injected[start:]
    return {i.recipient.lower() for i in injected if FAULTS[i.fault].permanent}


@pytest.mark.slow
def test_send_survives_sigkill_at_random_points(workspace: Path, run: Runner) -> None:
    composed = run("compose", *sorted(str(p) for p in (workspace / "articles").glob("*.md")))
    assert composed.exit_code == 0, composed.output
    addresses = write_list(workspace / "subscribers" / "chaos.csv", RECIPIENTS)
    draft = latest_draft(find_workspace(workspace))
    plan = FaultPlan(seed=SEED, rate=0.10)
    rng = random.Random(SEED)
    argv = [str(DIGEST_MAIL), "send", draft.id, "--list", "chaos", "--yes"]
    deadline = time.monotonic() + 150
    kills = 0
    runs = 0
    outputs: list[str] = []
    # Refused (5xx) in a run that was then killed: while the circuit breaker judges a
    # run's first answers it keeps their rows queued, so a crash sends them again
    # (docs/relays.md), and the plan's next attempt for them may accept.
    held_in_a_crash: set[str] = set()
    with FaultServer(plan) as server:
        env = _env(server.url, workspace)
        recorder = server.recorder
        # First kill early: start-up, snapshot or the first messages.
        early = time.monotonic() + rng.uniform(0.2, 1.5)
        start = len(recorder.injected)
        code, out = _run_until(argv, env, lambda: time.monotonic() > early, deadline)
        if code is None:
            held_in_a_crash |= _refused_since(recorder, start)
        runs += 1
        kills += code is None
        outputs.append(out)
        for _ in range(KILLS - 1):
            target = len(recorder.accepted) + rng.randint(200, 1200)
            reached = lambda t=target: len(recorder.accepted) >= t  # noqa: E731
            start = len(recorder.injected)
            code, out = _run_until(argv, env, reached, deadline)
            if code is None:
                held_in_a_crash |= _refused_since(recorder, start)
            runs += 1
            kills += code is None
            outputs.append(out)
            if code is not None:
                break
        # Rerun without killing until it stops changing; then resend what is uncertain.
        for flags in ([], [], ["--resend-uncertain"], ["--resend-uncertain"]):
            code, out = _run_until([*argv, *flags], env, None, deadline)
            runs += 1
            outputs.append(out)
            rows = deliveries(workspace, f"{draft.id}/chaos")
            waiting = sum(r.state == "uncertain" for r in rows.values())
            if waiting:
                # The run says how many are uncertain and how to resend them.
                assert f"{waiting} uncertain" in out and "--resend-uncertain" in out, out
            if code == 0 and all(r.state in ("sent", "failed") for r in rows.values()):
                break
    faults = recorder.faults_by_kind()
    rows = deliveries(workspace, f"{draft.id}/chaos")
    uncertain = {k for k, r in rows.items() if r.uncertain}
    counts = recorder.accepted_counts()
    doubled = {a for a, n in counts.items() if n > 1}
    print(
        f"\nkill chaos: {runs} runs, {kills} kills survived, {sum(faults.values())} faults "
        f"injected, {len(uncertain)} reported uncertain, {len(doubled)} accepted twice"
    )
    assert kills >= 3, outputs
    assert code == 0, outputs[-1]
    assert len(rows) == RECIPIENTS
    states = {r.state for r in rows.values()}
    assert states <= {"sent", "failed"}, states
    sent = {k for k, r in rows.items() if r.state == "sent"}
    assert check_against_ledger(recorder, sent=sent, uncertain=uncertain) == []
    # Outside the crash windows the end is exactly what the server's plan dictates.
    wrong = []
    for address in addresses:
        key = address.lower()
        if key in uncertain or key in held_in_a_crash:
            continue
        state, reply = plan.expected(address)
        row = rows[key]
        if row.state != state or (state == "failed" and f"{row.code} {row.reply}" != reply):
            wrong.append(f"{key}: ledger {row.state} {row.code} {row.reply!r}, plan {reply!r}")
    assert wrong == []
    assert all(r.reply for r in rows.values() if r.state == "failed")
    final = outputs[-1]
    assert "Traceback" not in "".join(outputs)
    assert str(len(sent)) in final  # the last run's summary names the totals


@pytest.mark.slow
def test_two_senders_of_one_campaign_never_double(workspace: Path, run: Runner) -> None:
    """Cron and an impatient editor start the same send at once: nobody gets two copies."""
    composed = run("compose", "articles/kyoto-crafts-successors.md")
    assert composed.exit_code == 0, composed.output
    write_list(workspace / "subscribers" / "chaos.csv", 1500)
    draft = latest_draft(find_workspace(workspace))
    plan = FaultPlan(seed=SEED + 1, rate=0.05)
    argv = [str(DIGEST_MAIL), "send", draft.id, "--list", "chaos", "--yes"]
    with FaultServer(plan) as server:
        env = _env(server.url, workspace)
        procs = [
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120)[0].decode() for p in procs]
        codes = [p.returncode for p in procs]
        rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    rows = deliveries(workspace, f"{draft.id}/chaos")
    print(f"\ntwo senders: exits {codes}, {len(server.recorder.injected)} faults")
    assert "Traceback" not in "".join(outputs) + rerun.stdout + rerun.stderr
    # One of them sent (5: all but the server's own stalls and drops after a message).
    assert {0, 5} & set(codes), outputs
    loser = outputs[codes.index(1)] if 1 in codes else ""
    if loser:  # the other stopped with one clear line
        assert [line for line in loser.splitlines() if line.startswith("Error: ")], loser
    # Uncertain only where the server left a message without its reply (a stall, a drop).
    uncertain = {k for k, r in rows.items() if r.uncertain}
    assert uncertain <= _left_in_doubt(server.recorder, plan)
    assert {r.state for r in rows.values()} <= {"sent", "failed", "uncertain"}
    sent = {k for k, r in rows.items() if r.state == "sent"}
    assert check_against_ledger(server.recorder, sent=sent, uncertain=uncertain) == []


@pytest.mark.slow
def test_ctrl_c_at_random_points_leaves_nothing_uncertain(workspace: Path, run: Runner) -> None:
    """SIGINT (Ctrl-C) finishes what is in flight: unlike SIGKILL, it leaves nothing
    uncertain (only the server's own stalls and drops after a message do), and nobody
    may be accepted twice at all."""
    composed = run("compose", "articles/kyoto-crafts-successors.md")
    assert composed.exit_code == 0, composed.output
    write_list(workspace / "subscribers" / "chaos.csv", 1500)
    draft = latest_draft(find_workspace(workspace))
    plan = FaultPlan(seed=SEED + 2, rate=0.10)
    rng = random.Random(SEED + 2)
    argv = [str(DIGEST_MAIL), "send", draft.id, "--list", "chaos", "--yes"]
    interrupts = 0
    with FaultServer(plan) as server:
        env = _env(server.url, workspace)
        recorder = server.recorder
        for _ in range(3):
            target = len(recorder.accepted) + rng.randint(100, 400)
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 60
            while proc.poll() is None and len(recorder.accepted) < target:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                interrupts += 1
            out = proc.communicate(timeout=30)[0].decode()
            assert "Traceback" not in out, out
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    rows = deliveries(workspace, f"{draft.id}/chaos")
    faults = sum(recorder.faults_by_kind().values())
    print(f"\nctrl-c chaos: {interrupts} interrupts, {faults} faults")
    assert interrupts >= 2
    uncertain = {k for k, r in rows.items() if r.uncertain}
    assert uncertain <= _left_in_doubt(recorder, plan)
    assert done.returncode == (5 if uncertain else 0), done.stdout + done.stderr
    assert {r.state for r in rows.values()} <= {"sent", "failed", "uncertain"}
    sent = {k for k, r in rows.items() if r.state == "sent"}
    assert check_against_ledger(recorder, sent=sent, uncertain=uncertain) == []
