"""A message whose final dot went out is never sent again on a guess.

Once the body's end may have reached the relay, a timeout or a dropped connection
cannot say whether the relay queued it: the row is reported ``uncertain`` (resent only
with ``--resend-uncertain``), never retried. Reproduced with a scripted fault plan, for
both SMTP clients: a relay that accepts after the client stopped waiting (``slow``
longer than the timeout) and one that loses its 250 (``accept-drop``).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from chaos_helpers import FastClock, deliveries, env_for, write_list
from delivery_draft import make_draft
from digest_mail.config import SmtpSettings, find_workspace
from digest_mail.delivery.campaign import run_campaign
from faultserver import Fault, FaultPlan, FaultServer, check_against_ledger

# Not in the chaos catalogue (that would change every seeded plan): scripted only.
LATE_250 = Fault("late-250", "END", "late-accept")

CLIENTS = (
    ["pipelining", "aiosmtplib"]
    if "client" in {f.name for f in dataclasses.fields(SmtpSettings)}
    else ["default"]
)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("fault", ["late-250", "accept-drop", "slow", "stall"])
def test_a_message_the_relay_may_have_queued_is_uncertain_not_retried(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, client: str, fault: str
) -> None:
    addresses = write_list(workspace / "subscribers" / "chaos.csv", 6)
    doubtful = addresses[2].lower()
    plan = FaultPlan(script={doubtful: [LATE_250 if fault == "late-250" else fault]})
    # The relay takes 1.5 s to accept where the client waits 0.5 s.
    with FaultServer(plan, slow_seconds=1.5, stall_seconds=1.5) as server:
        for name, value in env_for(server.url, timeout=0.5, concurrency=2).items():
            monkeypatch.setenv(name, value)
        if client != "default":
            monkeypatch.setenv("DIGEST_MAIL_SMTP_CLIENT", client)
        ws = find_workspace(workspace)
        report = run_campaign(ws, make_draft(), "chaos", concurrency=2, clock=FastClock())
        time.sleep(2.0)  # whatever the relay still does with the first try, it has done
    recorder = server.recorder
    rows = deliveries(ws, report.campaign_id)
    # late-250 and accept-drop queued it (once); slow and stall never finished it.
    assert recorder.accepted_counts()[doubtful] == (fault in ("late-250", "accept-drop"))
    assert report.uncertain == 1 and report.exit_code == 5
    assert rows[doubtful].state == "uncertain" and rows[doubtful].uncertain, rows[doubtful]
    others = {k: r for k, r in rows.items() if k != doubtful}
    assert {r.state for r in others.values()} == {"sent"}
    sent = set(others)
    assert check_against_ledger(recorder, sent=sent, uncertain={doubtful}) == []
