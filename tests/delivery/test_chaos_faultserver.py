"""The fault server does what each fault says (tested with plain aiosmtplib)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest

from faultserver import FAULTS, FaultPlan, FaultServer, check_against_ledger


def _message(to: str, n: int = 0) -> bytes:
    msg = EmailMessage()
    msg["From"] = "digest@example.jp"
    msg["To"] = to
    msg["Subject"] = "テスト"
    msg["Message-ID"] = f"<{n}.{to}@example.jp>"
    msg.set_content("本文です。\n" * 20)
    return msg.as_bytes()


async def _send(url_port: int, to: str, *, timeout: float = 1.0) -> tuple[str, str]:
    """('ok'|'reply'|'dropped'|'timeout', detail) for one message on a fresh connection."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=url_port, timeout=timeout, start_tls=False)
    try:
        await client.connect()
        errors, _ = await client.sendmail("digest@example.jp", [to], _message(to))
        if errors:
            code, text = next(iter(errors.values()))
            return ("reply", f"{code} {text}")
        return ("ok", "")
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients[0]
        return ("reply", f"{refused.code} {refused.message}")
    except aiosmtplib.SMTPResponseException as exc:
        return ("reply", f"{exc.code} {exc.message}")
    except aiosmtplib.SMTPTimeoutError:
        return ("timeout", "")
    except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
        return ("dropped", str(exc))
    finally:
        client.close()


@pytest.mark.parametrize(
    ("fault", "outcome", "code"),
    [
        ("421-rcpt", "reply", "421"),
        ("421-end", "reply", "421"),
        ("451-rcpt", "reply", "451"),
        ("451-end", "reply", "451"),
        ("452-rcpt", "reply", "452"),
        ("454-rcpt", "reply", "454"),
        ("550-rcpt", "reply", "550"),
        ("552-end", "reply", "552"),
        ("drop-before-data", "dropped", ""),
        ("drop-during-data", "dropped", ""),
        ("stall", "timeout", ""),
        ("slow", "ok", ""),
    ],
)
async def test_each_fault_then_acceptance(fault: str, outcome: str, code: str) -> None:
    to = "hanako@example.jp"
    plan = FaultPlan(script={to: [fault]})
    with FaultServer(plan, stall_seconds=2.0) as server:
        first = await _send(server.port, to, timeout=0.5)
        second = await _send(server.port, to, timeout=0.5)
        accepted = server.recorder.accepted_counts()
    assert first[0] == outcome, first
    assert first[1].startswith(code)
    assert second == ("ok", "")
    expected_count = 2 if outcome == "ok" else 1
    assert accepted[to] == expected_count
    assert server.recorder.faults_by_kind() == {fault: 1}


async def test_accept_drop_queues_the_message_but_loses_the_reply() -> None:
    to = "taro@example.jp"
    with FaultServer(FaultPlan(script={to: ["accept-drop"]})) as server:
        first = await _send(server.port, to)
        accepted = server.recorder.accepted_counts()
    assert first[0] == "dropped"
    assert accepted[to] == 1


def test_plan_is_seeded_and_independent_of_order() -> None:
    plan = FaultPlan(seed=42, rate=0.1)
    again = FaultPlan(seed=42, rate=0.1)
    other = FaultPlan(seed=43, rate=0.1)
    addresses = [f"user{i}@example.jp" for i in range(2000)]
    draws = [plan.fault(a, 0) for a in addresses]
    assert draws == [again.fault(a, 0) for a in reversed(addresses)][::-1]
    assert draws != [other.fault(a, 0) for a in addresses]
    hit = sum(d is not None for d in draws)
    assert 140 < hit < 260  # 10 % of 2,000, give or take
    assert {d.name for d in draws if d is not None} == set(FAULTS) - {"accept-drop"}


def test_expected_follows_the_plan() -> None:
    plan = FaultPlan(
        script={
            "a@example.jp": ["451-rcpt", "drop-before-data", "550-rcpt"],
            "b@example.jp": ["451-end", "slow"],
            # The message went out and no reply came: never retried, so uncertain.
            "d@example.jp": ["451-rcpt", "drop-during-data", "550-rcpt"],
            "e@example.jp": ["stall", "slow"],
            "f@example.jp": ["accept-drop"],
        }
    )
    assert plan.expected("a@example.jp") == ("failed", FAULTS["550-rcpt"].reply)
    assert plan.expected("b@example.jp") == ("sent", "")
    assert plan.expected("c@example.jp") == ("sent", "")
    for address in ("d@example.jp", "e@example.jp", "f@example.jp"):
        assert plan.expected(address) == ("uncertain", "")


async def test_concurrent_clients_are_recorded_once_each() -> None:
    addresses = [f"user{i}@example.jp" for i in range(60)]
    with FaultServer(FaultPlan()) as server:
        results = await asyncio.gather(*(_send(server.port, a) for a in addresses))
        problems = check_against_ledger(server.recorder, sent=set(addresses), uncertain=set())
    assert all(r == ("ok", "") for r in results)
    assert problems == []
    ids = {m.message_id for m in server.recorder.messages()}
    assert len(ids) == 60


def test_runs_as_its_own_process() -> None:
    """``python tests/faultserver.py`` serves until Ctrl-C, then prints what it saw."""
    script = Path(__file__).parents[1] / "faultserver.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), "--seed", "3", "--rate", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"smtp://127\.0\.0\.1:(\d+)", first)
        assert match, first
        result = asyncio.run(_send(int(match.group(1)), "kato@example.jp"))
        assert result == ("ok", "")
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=10)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "accepted 1" in rest
