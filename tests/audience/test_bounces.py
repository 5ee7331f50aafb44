"""Bounce import from a real mbox and Maildir of Postfix- and Exchange-style reports."""

from __future__ import annotations

import json
import mailbox
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.utils import format_datetime
from pathlib import Path

import pytest

from digest_mail.audience.bounces import import_bounces
from digest_mail.errors import InputError
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.suppressions import get_suppression, is_suppressed, list_suppressions

FIXTURES = Path(__file__).parents[1] / "fixtures" / "bounces"
ALL = (
    "postfix-hard.eml",
    "exchange-hard.eml",
    "postfix-two-recipients.eml",
    "postfix-delayed.eml",
    "exchange-delayed.eml",
    "autoreply.eml",
)
NOW = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)


def make_mbox(path: Path, messages: list[bytes]) -> Path:
    box = mailbox.mbox(path)
    for data in messages:
        box.add(data)
    box.flush()
    box.close()
    return path


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def redated(name: str, when: datetime, message_id: str, original_id: str = "") -> bytes:
    """The same report, sent at another time (a later notice of the same MTA), about the
    message we sent with ``original_id`` (default: the one the fixture quotes)."""
    message = message_from_bytes(fixture(name))
    message.replace_header("Date", format_datetime(when))
    message.replace_header("Message-Id", message_id)
    data = message.as_bytes()
    if original_id:
        data = data.replace(b"<2026-W44.weekly.77d0e2@digest.example.jp>", original_id.encode())
    return data


def soft(
    days: int, edition: int, start: datetime = datetime(2026, 11, 1, 4, 40, tzinfo=UTC)
) -> bytes:
    """The expiry report (Action: failed, 4.2.2) of edition ``edition``, ``days`` after start."""
    return redated(
        "postfix-expired.eml",
        start + timedelta(days=days),
        f"<expired{days}.{edition}@mail.example.jp>",
        f"<edition{edition}@digest.example.jp>",
    )


def delay(
    days: int, edition: int, start: datetime = datetime(2026, 11, 1, 4, 40, tzinfo=UTC)
) -> bytes:
    return redated(
        "postfix-delayed.eml",
        start + timedelta(days=days),
        f"<delayed{days}.{edition}@mail.example.jp>",
        f"<edition{edition}@digest.example.jp>",
    )


def test_mbox_of_postfix_and_exchange_reports(workspace: Path, run) -> None:
    make_mbox(workspace / "bounces.mbox", [fixture(n) for n in ALL])
    result = run("bounces", "import", "bounces.mbox", "--trust-unmatched")
    assert result.exit_code == 0
    assert result.output == (
        "ghost.user@example.com: hard bounce 5.1.1: suppressed — smtp; 550 5.1.1 "
        "<ghost.user@example.com>: Recipient address rejected: User unknown in virtual "
        "mailbox table\n"
        "kaigai.tantou@example.net: hard bounce 5.1.10: suppressed — smtp;550 5.1.10 "
        "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup\n"
        "kyuu.kaiin@example.jp: hard bounce 5.2.1: suppressed — smtp; 550 5.2.1 "
        "<kyuu.kaiin@example.jp>: Mailbox disabled, not accepting messages\n"
        "mailbox.full@example.jp: delay warning 4.2.2: still being retried, not a bounce — "
        "smtp; 452 4.2.2 <mailbox.full@example.jp>: Mailbox full\n"
        "slow.server@example.net: delay warning 4.4.7: still being retried, not a bounce — "
        "smtp;400 4.4.7 Message delayed\n"
        "bounces.mbox: 6 messages, 5 delivery reports, 1 other messages ignored; 3 hard bounces, "
        "0 soft bounces, 2 delay warnings, 1 other statuses; 3 addresses newly suppressed\n"
    )
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        rows = {s.address: (s.reason, s.source, s.detail) for s in list_suppressions(ledger)}
    assert rows == {
        "ghost.user@example.com": (
            "bounced",
            "bounces.mbox",
            "5.1.1 smtp; 550 5.1.1 <ghost.user@example.com>: Recipient address rejected: "
            "User unknown in virtual mailbox table",
        ),
        "kaigai.tantou@example.net": (
            "bounced",
            "bounces.mbox",
            "5.1.10 smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
            "address lookup",
        ),
        "kyuu.kaiin@example.jp": (
            "bounced",
            "bounces.mbox",
            "5.2.1 smtp; 550 5.2.1 <kyuu.kaiin@example.jp>: Mailbox disabled, not accepting "
            "messages",
        ),
    }
    # The delivered recipient and the auto-reply's sender are left alone.
    assert "tokyo.office@example.com" not in rows and "yamada.taro@example.jp" not in rows

    again = json.loads(
        run("bounces", "import", "bounces.mbox", "--trust-unmatched", "--json").output
    )
    assert again["suppressed"] == 0
    assert [e["outcome"] for e in again["events"]] == [
        "already-suppressed",
        "already-suppressed",
        "already-suppressed",
        "noted",
        "noted",
    ]


def test_maildir_folder(workspace: Path) -> None:
    box = mailbox.Maildir(workspace / "Maildir")
    for name in ("exchange-hard.eml", "autoreply.eml"):
        box.add(fixture(name))
    box.close()
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        result = import_bounces(
            workspace / "Maildir", ledger, clock=lambda: NOW, trust_unmatched=True
        )
        assert (result.messages, result.reports, result.ignored, result.suppressed) == (2, 1, 1, 1)
        assert is_suppressed(ledger, "Kaigai.Tantou@example.net")


def test_three_soft_bounces_within_30_days_suppress(tmp_path: Path) -> None:
    messages = [soft(d, edition) for edition, d in enumerate((0, 12, 24))]
    mbox = make_mbox(tmp_path / "soft.mbox", messages)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        result = import_bounces(mbox, ledger, clock=lambda: NOW, trust_unmatched=True)
        assert [(e.soft_count, e.outcome) for e in result.events] == [
            (1, "recorded"),
            (2, "recorded"),
            (3, "suppressed"),
        ]
        suppression = get_suppression(ledger, "mailbox.full@example.jp")
    assert suppression is not None
    assert suppression.detail == (
        "3 soft bounces in 30 days, last: 4.2.2 smtp; 452 4.2.2 <mailbox.full@example.jp>: "
        "Mailbox full"
    )


def test_soft_bounces_spread_over_more_than_30_days_do_not(tmp_path: Path) -> None:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    messages = [soft(d, edition, start) for edition, d in enumerate((0, 20, 40, 60))]
    mbox = make_mbox(tmp_path / "soft.mbox", messages)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        result = import_bounces(mbox, ledger, clock=lambda: NOW, trust_unmatched=True)
        assert [e.soft_count for e in result.events] == [1, 2, 2, 2]
        assert not is_suppressed(ledger, "mailbox.full@example.jp")


def test_delay_warnings_are_no_bounce_and_a_message_bounces_softly_once(tmp_path: Path) -> None:
    # A greylisted mailbox sent two editions: a delay warning and an expiry each, four
    # reports. That is two soft bounces, not four: nobody is suppressed.
    messages = [delay(0, 1), soft(5, 1), delay(7, 2), soft(12, 2)]
    mbox = make_mbox(tmp_path / "grey.mbox", messages)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        result = import_bounces(mbox, ledger, clock=lambda: NOW, trust_unmatched=True)
        assert (result.delayed, result.soft, result.suppressed) == (2, 2, 0)
        assert [(e.kind, e.soft_count, e.outcome) for e in result.events] == [
            ("delay", 0, "noted"),
            ("soft", 1, "recorded"),
            ("delay", 0, "noted"),
            ("soft", 2, "recorded"),
        ]
        assert not is_suppressed(ledger, "mailbox.full@example.jp")
        # A second expiry report about an edition already counted counts nothing more.
        again = import_bounces(
            make_mbox(
                tmp_path / "again.mbox",
                [redated("postfix-expired.eml", NOW, "<x@y>", "<edition2@digest.example.jp>")],
            ),
            ledger,
            clock=lambda: NOW,
            trust_unmatched=True,
        )
        assert [(e.soft_count, e.outcome) for e in again.events] == [(2, "seen-before")]
        assert not is_suppressed(ledger, "mailbox.full@example.jp")


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)])
def test_the_third_soft_bounce_in_30_days_suppresses_in_any_order(
    tmp_path: Path, order: tuple[int, int, int]
) -> None:
    days = (0, 14, 29)
    messages = [soft(days[i], i) for i in order]
    mbox = make_mbox(tmp_path / "soft.mbox", messages)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        result = import_bounces(mbox, ledger, clock=lambda: NOW, trust_unmatched=True)
        assert [e.soft_count for e in result.events] == [1, 2, 3]
        assert [e.outcome for e in result.events][-1] == "suppressed"
        assert is_suppressed(ledger, "mailbox.full@example.jp")


def test_two_soft_bounces_in_30_days_and_a_third_later_do_not_suppress(tmp_path: Path) -> None:
    messages = [soft(40, 2), soft(0, 0), soft(20, 1)]  # 0, 20 within 30; 40 is 40 from 0
    mbox = make_mbox(tmp_path / "soft.mbox", messages)
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        result = import_bounces(mbox, ledger, clock=lambda: NOW, trust_unmatched=True)
        # 20 and 40 are within 30 days too: at most two in any window.
        assert [e.soft_count for e in result.events] == [1, 1, 2]
        assert not is_suppressed(ledger, "mailbox.full@example.jp")


def test_report_without_date_uses_the_injected_clock(tmp_path: Path) -> None:
    message = message_from_bytes(fixture("exchange-delayed.eml"))
    del message["Date"]
    status = message.get_payload()[1].get_payload()[0]
    del status["Arrival-Date"]
    message.get_payload()[1].get_payload()[1].replace_header("Action", "failed")  # a soft bounce
    mbox = make_mbox(tmp_path / "nodate.mbox", [message.as_bytes()])
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        import_bounces(mbox, ledger, clock=lambda: NOW, trust_unmatched=True)
        row = ledger.execute("SELECT bounced_at FROM soft_bounces").fetchone()
    assert row[0] == "2026-11-26T03:00:00+00:00"


def test_missing_path_and_non_maildir_folder(workspace: Path, run) -> None:
    missing = run("bounces", "import", "nope.mbox")
    assert (missing.exit_code, missing.output) == (
        1,
        "Error: nope.mbox: no such mbox file or Maildir folder\n",
    )
    (workspace / "plain").mkdir()
    with (
        Ledger(workspace / "var" / "ledger.sqlite3") as ledger,
        pytest.raises(InputError, match="is a folder but not a Maildir"),
    ):
        import_bounces(workspace / "plain", ledger)


def test_abuse_report_suppresses_the_complaining_reader(workspace: Path, run) -> None:
    make_mbox(workspace / "fbl.mbox", [fixture("arf-complaint.eml"), fixture("autoreply.eml")])
    result = run("bounces", "import", "fbl.mbox", "--trust-unmatched")
    assert result.output == (
        "kobayashi.daiki@example.com: spam complaint: suppressed\n"
        "fbl.mbox: 2 messages, 0 delivery reports, 1 other messages ignored; 0 hard bounces, "
        "0 soft bounces, 0 other statuses, 1 complaints; 1 addresses newly suppressed\n"
    )
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        suppression = get_suppression(ledger, "kobayashi.daiki@example.com")
    assert suppression is not None
    assert (suppression.reason, suppression.source) == ("complained", "fbl.mbox")


def _bounce_of(address: str, message_id: str) -> bytes:
    """The Postfix hard-bounce fixture, about ``message_id`` sent to ``address``."""
    text = fixture("postfix-hard.eml").decode("ascii")
    text = text.replace("ghost.user@example.com", address)
    text = text.replace("Ghost.User@example.com", address)
    return text.replace("<2026-W48.weekly.1f3a9c@digest.example.jp>", message_id).encode()


def test_only_a_bounce_of_a_message_we_sent_suppresses(workspace: Path, run) -> None:
    """A forged report (any Message-ID) must not unsubscribe a reader; a real one does."""
    from email import policy
    from email.parser import BytesParser

    assert run("compose", *sorted(str(p) for p in Path("articles").glob("*.md"))).exit_code == 0
    assert run("send", "--list", "weekly", "--yes").exit_code == 0
    sent = {}
    for path in (workspace / "outbox" / "new").iterdir():
        msg = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        sent[msg["To"].addresses[0].addr_spec] = str(msg["Message-ID"])
    reader = "yamada.taro@example.jp"
    forged = "<00000000000000000000000000000000@chrysanthemum-digest.example.jp>"
    make_mbox(workspace / "forged.mbox", [_bounce_of(reader, forged)])
    result = run("bounces", "import", "forged.mbox")
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == (
        f"{reader}: hard bounce 5.1.1: ignored, not about a message this ledger sent"
    )
    assert result.output.splitlines()[1].endswith(
        "0 addresses newly suppressed; 1 reports about mail this ledger did not send, "
        "ignored (--trust-unmatched to act on them)"
    )
    # Another reader's real Message-ID does not count for this reader either.
    other = sent["suzuki.hanako@example.com"]
    make_mbox(workspace / "crossed.mbox", [_bounce_of(reader, other)])
    assert "ignored, not about" in run("bounces", "import", "crossed.mbox").output
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        assert not is_suppressed(ledger, reader)
    make_mbox(workspace / "real.mbox", [_bounce_of(reader, sent[reader])])
    result = run("bounces", "import", "real.mbox")
    assert result.output.splitlines()[0].startswith(f"{reader}: hard bounce 5.1.1: suppressed")
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        assert is_suppressed(ledger, reader)
