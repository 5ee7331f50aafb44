"""Chaos: a 5,000-recipient campaign where 10 % of SMTP transactions meet a fault.

The fault server decides each transaction's fate from (seed, recipient, attempt), so the
test knows each recipient's correct end without trusting the code under test: sent, or
failed with exactly the 5xx reply the server gave. The ledger must agree row by row, the
set the server accepted must equal the set the ledger calls sent, and nobody may be
accepted twice.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from chaos_helpers import FastClock, deliveries, env_for, write_list
from delivery_draft import make_draft
from digest_mail.config import SmtpSettings, find_workspace
from digest_mail.delivery.campaign import run_campaign
from faultserver import FaultPlan, FaultServer, check_against_ledger

RECIPIENTS = 5000
SEED = 20261125
# Both SMTP clients the send path can use, where the setting exists; the fallback client
# gets a smaller list to keep the suite fast.
SIZES = {"pipelining": RECIPIENTS, "aiosmtplib": 1500, "default": RECIPIENTS}
CLIENTS = (
    ["pipelining", "aiosmtplib"]
    if "client" in {f.name for f in dataclasses.fields(SmtpSettings)}
    else ["default"]
)


def _verdicts(plan: FaultPlan, addresses: list[str]) -> dict[str, tuple[str, str]]:
    return {a.lower(): plan.expected(a) for a in addresses}


@pytest.mark.slow
@pytest.mark.parametrize("client", CLIENTS)
def test_five_thousand_with_ten_percent_faults(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    size = SIZES[client]
    addresses = write_list(workspace / "subscribers" / "chaos.csv", size)
    plan = FaultPlan(seed=SEED, rate=0.10)
    clock = FastClock()
    with FaultServer(plan) as server:
        for name, value in env_for(server.url).items():
            monkeypatch.setenv(name, value)
        if client != "default":
            monkeypatch.setenv("DIGEST_MAIL_SMTP_CLIENT", client)
        ws = find_workspace(workspace)
        report = run_campaign(ws, make_draft(), "chaos", concurrency=8, clock=clock)
    recorder = server.recorder
    faults = recorder.faults_by_kind()
    transactions = sum(recorder.attempts.values())
    print(
        f"\nchaos ({client}): {size} recipients, {transactions} transactions, "
        f"{sum(faults.values())} faults injected {dict(sorted(faults.items()))}, "
        f"backoff skipped {clock.slept:.0f} s"
    )
    assert sum(faults.values()) >= 0.09 * size
    assert len(faults) >= 10  # nearly every kind met at least once

    rows = deliveries(ws.ledger_path, report.campaign_id)
    assert len(rows) == size
    expected = _verdicts(plan, addresses)
    states = Counter(r.state for r in rows.values())
    assert set(states) <= {"sent", "failed"}, states
    wrong = []
    for key, (state, reply) in expected.items():
        row = rows[key]
        if row.state != state:
            wrong.append(f"{key}: ledger {row.state} ({row.code} {row.reply}), server says {state}")
        elif state == "failed" and f"{row.code} {row.reply}" != reply:
            wrong.append(f"{key}: ledger reply {row.code} {row.reply!r}, server said {reply!r}")
    assert wrong == []

    sent = {k for k, r in rows.items() if r.state == "sent"}
    assert check_against_ledger(recorder, sent=sent, uncertain=set()) == []
    # The Message-ID the server got is the one the ledger recorded.
    by_id = {a.recipient.lower(): a.message_id for a in recorder.messages()}
    assert all(by_id[k] == rows[k].message_id for k in sent)
    assert report.sent == len(sent) and report.failed == size - len(sent)
    assert report.deferred == 0 and report.uncertain == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_a_lost_250_is_the_only_way_to_a_second_copy(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """accept-drop: the server queues the message, then the connection dies before '250'.

    No SMTP client can know the message went; a retry may deliver a second copy. Those
    recipients, and only those, may be doubled; everyone still ends sent exactly once in
    the ledger.
    """
    addresses = write_list(workspace / "subscribers" / "chaos.csv", 600)
    mix = {"accept-drop": 3.0, "451-end": 1.0, "drop-during-data": 1.0, "421-rcpt": 1.0}
    plan = FaultPlan(seed=SEED + 1, rate=0.15, mix=mix)
    with FaultServer(plan) as server:
        for name, value in env_for(server.url).items():
            monkeypatch.setenv(name, value)
        if client != "default":
            monkeypatch.setenv("DIGEST_MAIL_SMTP_CLIENT", client)
        ws = find_workspace(workspace)
        report = run_campaign(ws, make_draft(), "chaos", concurrency=4, clock=FastClock())
    recorder = server.recorder
    lost_replies = {i.recipient.lower() for i in recorder.injected if i.fault == "accept-drop"}
    print(
        f"\nlost 250 ({client}): {len(recorder.injected)} faults, {len(lost_replies)} "
        f"replies lost, {sum(n > 1 for n in recorder.accepted_counts().values())} doubled"
    )
    rows = deliveries(ws.ledger_path, report.campaign_id)
    assert {r.state for r in rows.values()} == {"sent"}
    assert len(rows) == len(addresses)
    sent = set(rows)
    assert lost_replies, "the plan injected no accept-drop"
    assert check_against_ledger(recorder, sent=sent, uncertain=set(), ambiguous=lost_replies) == []
    doubled = {a for a, n in recorder.accepted_counts().items() if n > 1}
    assert doubled <= lost_replies


@pytest.mark.parametrize("client", CLIENTS)
def test_a_relay_refusing_connections_in_its_greeting(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """Every 3rd new connection gets '421 Too many connections' before EHLO, on top of
    10 % transaction faults (which close connections, so reconnects are frequent)."""
    size = 500
    addresses = write_list(workspace / "subscribers" / "chaos.csv", size)
    plan = FaultPlan(seed=SEED + 3, rate=0.10)
    with FaultServer(plan, refuse_every=3) as server:
        for name, value in env_for(server.url).items():
            monkeypatch.setenv(name, value)
        if client != "default":
            monkeypatch.setenv("DIGEST_MAIL_SMTP_CLIENT", client)
        ws = find_workspace(workspace)
        report = run_campaign(ws, make_draft(), "chaos", concurrency=4, clock=FastClock())
    faults = sum(server.recorder.faults_by_kind().values())
    print(f"\ngreeting 421 ({client}): {server.refused} connections refused, {faults} faults")
    assert server.refused >= 5
    rows = deliveries(ws.ledger_path, report.campaign_id)
    wrong = [a for a in addresses if rows[a.lower()].state != plan.expected(a)[0]]
    assert wrong == []
    sent = {k for k, r in rows.items() if r.state == "sent"}
    assert check_against_ledger(server.recorder, sent=sent, uncertain=set()) == []
