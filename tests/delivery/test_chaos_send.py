"""Chaos: a 5,000-recipient campaign where 10 % of SMTP transactions meet a fault.

The fault server decides each transaction's fate from (seed, recipient, attempt), so the
test knows each recipient's correct end without trusting the code under test: sent,
failed with exactly the 5xx reply the server gave, or uncertain (the message and its
final dot went out and no reply came: a stall, a drop during or after the message). The
ledger must agree row by row, the set the server accepted must equal the set the ledger
calls sent (plus uncertain ones it may have queued), and nobody may be accepted twice.
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

    rows = deliveries(ws, report.campaign_id)
    assert len(rows) == size
    expected = _verdicts(plan, addresses)
    states = Counter(r.state for r in rows.values())
    assert set(states) <= {"sent", "failed", "uncertain"}, states
    wrong = []
    for key, (state, reply) in expected.items():
        row = rows[key]
        if row.state != state:
            wrong.append(f"{key}: ledger {row.state} ({row.code} {row.reply}), server says {state}")
        elif state == "failed" and f"{row.code} {row.reply}" != reply:
            wrong.append(f"{key}: ledger reply {row.code} {row.reply!r}, server said {reply!r}")
    assert wrong == []

    sent = {k for k, r in rows.items() if r.state == "sent"}
    uncertain = {k for k, r in rows.items() if r.state == "uncertain"}
    assert all(rows[k].uncertain for k in uncertain)
    assert check_against_ledger(recorder, sent=sent, uncertain=uncertain) == []
    # The Message-ID the server got is the one the ledger recorded.
    by_id = {a.recipient.lower(): a.message_id for a in recorder.messages()}
    assert all(by_id[k] == rows[k].message_id for k in sent)
    assert report.sent == len(sent) and report.failed == size - len(sent) - len(uncertain)
    assert report.deferred == 0 and report.uncertain == len(uncertain)


@pytest.mark.parametrize("client", CLIENTS)
def test_a_lost_250_is_reported_uncertain_never_sent_twice(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """accept-drop: the server queues the message, then the connection dies before '250'.

    No SMTP client can know the message went, and a retry may deliver a second copy: those
    recipients (and those whose connection died during the message) are reported
    uncertain, never retried; nobody is accepted twice.
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
    rows = deliveries(ws, report.campaign_id)
    assert {r.state for r in rows.values()} == {"sent", "uncertain"}
    assert len(rows) == len(addresses)
    assert [a for a in addresses if rows[a.lower()].state != plan.expected(a)[0]] == []
    sent = {k for k, r in rows.items() if r.state == "sent"}
    uncertain = {k for k, r in rows.items() if r.state == "uncertain"}
    assert lost_replies, "the plan injected no accept-drop"
    assert lost_replies <= uncertain
    assert report.uncertain == len(uncertain)
    assert check_against_ledger(recorder, sent=sent, uncertain=uncertain) == []
    assert [a for a, n in recorder.accepted_counts().items() if n > 1] == []


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
    rows = deliveries(ws, report.campaign_id)
    wrong = [a for a in addresses if rows[a.lower()].state != plan.expected(a)[0]]
    assert wrong == []
    sent = {k for k, r in rows.items() if r.state == "sent"}
    uncertain = {k for k, r in rows.items() if r.state == "uncertain"}
    assert check_against_ledger(server.recorder, sent=sent, uncertain=uncertain) == []
