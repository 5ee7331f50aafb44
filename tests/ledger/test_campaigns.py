"""The campaigns and deliveries tables through ledger.campaigns: the send path's batched
statements find rows by (campaign_id, seq), hand out Message-IDs made by the caller, and
write one UPDATE per distinct outcome."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from digest_mail.ledger import campaigns, claims
from digest_mail.ledger.db import Ledger, LedgerError, utcnow
from digest_mail.ledger.suppressions import is_suppressed, suppress

CAMPAIGN = "2026-W48/weekly"


@dataclass
class Job:
    seq: int
    address: str
    attempts: int
    message_id: str


@dataclass
class Result:
    state: str
    job: Job
    code: int | None
    reply: str
    bounced: bool = False


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        yield _with_five_rows(ledger)


def _with_five_rows(ledger: Ledger) -> Ledger:
    campaigns.create_campaign(
        ledger,
        CAMPAIGN,
        edition="2026-W48",
        list_name="weekly",
        kind="campaign",
        content_hash="h",
    )
    now = utcnow()
    campaigns.insert_deliveries(
        ledger,
        CAMPAIGN,
        [
            (CAMPAIGN, seq, f"r{seq}@example.jp", f"r{seq}@example.jp", "", "queued", "", now)
            for seq in range(1, 6)
        ],
    )
    campaigns.complete_snapshot(ledger, CAMPAIGN, already_received=0)
    return ledger


def ids() -> Callable[[], str]:
    numbers = iter(range(1, 100))
    return lambda: f"<{next(numbers)}@example.jp>"


def test_a_claim_marks_rows_sending_in_seq_order_and_gives_new_rows_message_ids(
    ledger: Ledger,
) -> None:
    message_ids = ids()
    claimed, last = claims.claim(ledger, CAMPAIGN, 0, 3, message_ids=message_ids)
    assert [row[0] for row in claimed] == [1, 2, 3] and last == 3
    assert [row[5] for row in claimed] == ["<1@example.jp>", "<2@example.jp>", "<3@example.jp>"]
    assert campaigns.count_states(ledger, CAMPAIGN) == {"sending": 3, "queued": 2}
    stored = dict(ledger.execute("SELECT seq, message_id FROM deliveries").fetchall())
    assert stored[2] == "<2@example.jp>" and stored[4] == ""

    # A row queued again keeps its Message-ID: a retry is the same message.
    claims.record_results(
        ledger,
        CAMPAIGN,
        [Result("queued", Job(2, "r2@example.jp", 1, ""), 451, "later")],
        source="",
    )
    claimed, last = claims.claim(ledger, CAMPAIGN, 1, 10, message_ids=message_ids)
    assert [row[0] for row in claimed] == [2, 4, 5] and last == 5
    assert claimed[0][5] == "<2@example.jp>"
    new = {row[5] for row in claimed[1:]}
    assert len(new) == 2 and not new & {"", "<1@example.jp>", "<2@example.jp>", "<3@example.jp>"}


def test_a_reader_suppressed_since_the_snapshot_is_not_claimed(ledger: Ledger) -> None:
    suppress(ledger, "r2@example.jp", reason="unsubscribed", source="one-click")
    claimed, last = claims.claim(ledger, CAMPAIGN, 0, 2, message_ids=ids())
    assert [row[0] for row in claimed] == [1] and last == 2
    state, reply, message_id = ledger.execute(
        "SELECT state, last_reply, message_id FROM deliveries WHERE seq = 2"
    ).fetchone()
    assert (state, reply, message_id) == ("suppressed", "suppressed since the snapshot", "")


def test_results_are_recorded_per_outcome_and_a_bounce_suppresses(ledger: Ledger) -> None:
    claims.claim(ledger, CAMPAIGN, 0, 5, message_ids=ids())
    jobs = [Job(seq, f"r{seq}@example.jp", 1, "") for seq in range(1, 6)]
    results = [Result("sent", job, 250, "") for job in jobs[:3]]
    results.append(Result("failed", jobs[3], 550, "5.1.1 no such user", bounced=True))
    results.append(Result("uncertain", jobs[4], None, "abandoned"))
    claims.record_results(ledger, CAMPAIGN, results, source="campaign x")
    assert campaigns.count_states(ledger, CAMPAIGN) == {"sent": 3, "failed": 1, "uncertain": 1}
    assert is_suppressed(ledger, "r4@example.jp")
    assert campaigns.failures(ledger, CAMPAIGN, limit=10) == [
        {"email": "r4@example.jp", "code": 550, "reply": "5.1.1 no such user", "attempts": 1}
    ]
    flags = ledger.execute("SELECT seq FROM deliveries WHERE uncertain = 1").fetchall()
    assert [row[0] for row in flags] == [5]


def test_a_result_for_a_row_that_holds_another_address_changes_nothing(ledger: Ledger) -> None:
    claims.claim(ledger, CAMPAIGN, 0, 2, message_ids=ids())
    wrong = [
        Result("sent", Job(1, "r1@example.jp", 1, ""), 250, ""),
        Result("sent", Job(2, "x@example.jp", 1, ""), 250, ""),
    ]
    with pytest.raises(LedgerError, match="moved or were taken over while"):
        claims.record_results(ledger, CAMPAIGN, wrong, source="")
    assert campaigns.count_states(ledger, CAMPAIGN)["sending"] == 2


def test_requeue_takes_deferred_rows_and_uncertain_ones_only_when_asked(ledger: Ledger) -> None:
    claims.claim(ledger, CAMPAIGN, 0, 3, message_ids=ids())
    claims.record_results(
        ledger,
        CAMPAIGN,
        [
            Result("deferred", Job(1, "r1@example.jp", 3, ""), 451, "later"),
            Result("uncertain", Job(2, "r2@example.jp", 1, ""), None, ""),
            Result("failed", Job(3, "r3@example.jp", 1, ""), None, "no SMTPUTF8"),
        ],
        source="",
    )
    claims.requeue(ledger, CAMPAIGN, uncertain=False, unanswered_reply="no SMTPUTF8")
    assert campaigns.count_states(ledger, CAMPAIGN) == {"queued": 4, "uncertain": 1}
    claims.requeue(ledger, CAMPAIGN, uncertain=True, unanswered_reply="no SMTPUTF8")
    assert campaigns.count_states(ledger, CAMPAIGN) == {"queued": 5}
