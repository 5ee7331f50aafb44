"""Hostile subscriber lists (tests/corpus/lists): checked, then really sent over SMTP.

Each file either stops with one clear ``Error: …`` line, or is read with every bad row
reported by file and line. Then the list is sent to a real SMTP server on 127.0.0.1 and
every message the server took is parsed: the header set is exactly the one we write
(nothing injected), and every valid recipient got exactly one message — none lost.
"""

from __future__ import annotations

import shutil
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from chaos_helpers import deliveries, env_for
from conftest import Runner
from delivery_draft import make_draft
from digest_mail.audience.addresses import address_key
from digest_mail.audience.csvfiles import scan_list
from digest_mail.audience.rows import Recipient, RowProblem
from digest_mail.config import find_workspace
from digest_mail.delivery.campaign import run_campaign
from digest_mail.delivery.report import NothingToSend
from digest_mail.errors import DigestMailError
from faultserver import FaultServer
from header_limits import HEADERS as MESSAGE_HEADERS

CORPUS = Path(__file__).parents[1] / "corpus" / "lists"
# Files that cannot be read at all: one error line naming the file, nothing sent.
UNREADABLE = {
    "binary.csv": "neither UTF-8 nor cp932",
    "empty.csv": "empty file",
    "no-email-column.csv": "no 'email' column",
    "utf16-nobom.csv": "no 'email' column",
}
# Every header a sent message may carry (the property tests' set), plus a signature.
HEADERS = MESSAGE_HEADERS | {"dkim-signature"}
FILES = sorted(p.name for p in CORPUS.glob("*.csv"))
# Names the corpus expects to read back (decoding must never produce mojibake).
EXPECTED_NAMES = {
    "cp932.csv": {
        "yamada@example.jp": "山田 太郎",
        "takahashi@example.jp": "髙橋 ①郎",
        "kana@example.jp": "ｶﾅ ﾀﾛｳ",
    },
    "utf16.csv": {"yamada@example.jp": "山田 太郎", "sato@example.jp": "佐藤 花子"},
    "bom.csv": {"yamada@example.jp": "山田 太郎"},
}

# The oracle, written by hand from the files (not from the loader): who must get the mail.
MUST_RECEIVE = {
    "bom.csv": {"yamada@example.jp", "sato@example.jp"},
    # An unclosed quote swallows the rest of the file into one field: CSV semantics,
    # reported at line 2 with the swallowed text shown.
    "broken-quote.csv": set(),
    "cp932.csv": {
        "yamada@example.jp",
        "sato@example.jp",
        "takahashi@example.jp",
        "kana@example.jp",
    },
    "duplicates-by-case.csv": {"hanako@example.jp", "taro@example.jp"},
    # sato's and watanabe's names are encoded words: problem rows of the list, skipped
    # as invalid (see SECURITY.md).
    "header-shaped.csv": {"yamada@example.jp", "suzuki@example.jp", "kobayashi@example.jp"},
    # The relay here has no SMTPUTF8: the IDN domains go out in their ASCII form, and
    # only the Japanese local part (none here) would need SMTPUTF8.
    "idn.csv": {"ito@example.jp", "suzuki@example.jp", "yamada@例え.jp", "sato@例え.jp"},
    "line-breaks.csv": {"suzuki@example.jp", "watanabe@example.jp"},
    # 10,000-character names are problem rows (issue 14 item 11: a name past 200
    # characters made a To line longer than 998 octets, refused by relays).
    "long-fields.csv": {"sato@example.jp"},
    "nul.csv": {"sato@example.jp", "suzuki@example.jp"},
    "quoted-local.csv": {"o'brien@example.jp", "first.last+tag@example.jp", "suzuki@example.jp"},
    "semicolon-tab.csv": {"yamada@example.jp", "sato@example.jp"},
    "utf16.csv": {"yamada@example.jp", "sato@example.jp"},
}


def _parse(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


@pytest.mark.parametrize("name", FILES)
def test_check_reports_or_refuses_cleanly(workspace: Path, run: Runner, name: str) -> None:
    shutil.copy(CORPUS / name, workspace / "subscribers" / name)
    stem = name.removesuffix(".csv")
    result = run("subscribers", "check", stem)
    assert "Traceback" not in result.output
    if name in UNREADABLE:
        assert result.exit_code == 1
        assert result.output.startswith("Error: subscribers/" + name), result.output
        assert UNREADABLE[name] in result.output
        assert len(result.output.strip().splitlines()) <= 2  # the error, maybe a hint
        return
    items = list(scan_list(workspace / "subscribers" / name))
    problems = [i for i in items if isinstance(i, RowProblem)]
    assert result.exit_code == (1 if problems else 0), result.output
    for problem in problems:
        assert f"subscribers/{name}:{problem.line}: " in result.output
    for recipient in (i for i in items if isinstance(i, Recipient)):
        expected = EXPECTED_NAMES.get(name, {}).get(recipient.email)
        if expected is not None:
            assert recipient.name == expected


@pytest.mark.parametrize("name", [f for f in FILES if f not in UNREADABLE])
def test_send_injects_nothing_and_loses_no_one(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    shutil.copy(CORPUS / name, workspace / "subscribers" / "hostile.csv")
    valid = [
        i for i in scan_list(workspace / "subscribers" / "hostile.csv") if isinstance(i, Recipient)
    ]
    with FaultServer(keep_messages=True) as server:
        for key, value in env_for(server.url).items():
            monkeypatch.setenv(key, value)
        ws = find_workspace(workspace)
        try:
            report = run_campaign(ws, make_draft(), "hostile", concurrency=2)
        except NothingToSend:
            # A list of nothing but hostile rows is refused as a whole, sending nothing.
            assert valid == [] and MUST_RECEIVE[name] == set(), name
            assert server.recorder.messages() == []
            return
        except DigestMailError as exc:
            pytest.fail(f"the whole send stopped on one hostile row: {exc}")
    rows = deliveries(ws, report.campaign_id)
    accepted = server.recorder.messages()
    for message in accepted:
        assert message.data is not None
        msg = _parse(message.data)
        names = [k.lower() for k in msg]
        assert set(names) <= HEADERS, (name, names)
        assert len(names) == len(set(names)), (name, names)
        # The envelope may carry the ASCII form of an IDN domain: compare by key.
        to = [address_key(a.addr_spec) for a in msg["To"].addresses]
        assert to == [address_key(message.recipient)]
        # The name arrives whole. (A name over ~660 bytes is split into several encoded
        # words; RFC 2047 readers join them, Python's parser puts a space between.)
        names = {r.key: r.name for r in valid}
        shown = msg["To"].addresses[0].display_name
        expected = names[address_key(message.recipient)]
        assert shown == expected or shown.replace(" ", "") == expected.replace(" ", "")
    counts = Counter(address_key(m.recipient) for m in accepted)
    lost = []
    for recipient in valid:
        row = rows.get(recipient.key)
        got = counts.get(recipient.key, 0)
        if row is None:
            lost.append(f"{recipient.email}: not in the ledger")
        elif row.state == "sent" and got != 1:
            lost.append(f"{recipient.email}: ledger sent, server got {got}")
        elif row.state == "failed" and not row.reply:
            lost.append(f"{recipient.email}: failed without a reason")
        elif row.state not in ("sent", "failed"):
            lost.append(f"{recipient.email}: left {row.state}")
    assert lost == []
    assert sum(counts.values()) == report.sent
    assert set(counts) == MUST_RECEIVE[name]
    assert all(n == 1 for n in counts.values())


def _send_list(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, rows: str, *, smtputf8: bool
) -> tuple[dict[str, str], list[str]]:
    (workspace / "subscribers" / "idn.csv").write_text("email,name\n" + rows, encoding="utf-8")
    with FaultServer(keep_messages=True, smtputf8=smtputf8) as server:
        for key, value in env_for(server.url).items():
            monkeypatch.setenv(key, value)
        ws = find_workspace(workspace)
        report = run_campaign(ws, make_draft(), "idn", concurrency=1)
    rows_by_key = deliveries(ws, report.campaign_id)
    return {r.email: f"{r.state} {r.reply}".strip() for r in rows_by_key.values()}, [
        m.recipient for m in server.recorder.messages()
    ]


def test_internationalized_addresses_reach_a_relay_that_offers_smtputf8(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    states, got = _send_list(
        workspace, monkeypatch, "yamada@例え.jp,山田\n山田@example.jp,山田\n", smtputf8=True
    )
    assert states == {"yamada@例え.jp": "sent", "山田@example.jp": "sent"}
    # Only the Japanese local part needs SMTPUTF8; the IDN domain goes as its A-label.
    assert sorted(got) == ["yamada@xn--r8jz45g.jp", "山田@example.jp"]


def test_an_idn_domain_with_an_ascii_local_part_needs_no_smtputf8(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    states, got = _send_list(
        workspace, monkeypatch, "sato@xn--r8jz45g.jp,佐藤\nyamada@例え.jp,山田\n", smtputf8=False
    )
    assert set(states.values()) == {"sent"}, states
    assert sorted(got) == ["sato@xn--r8jz45g.jp", "yamada@xn--r8jz45g.jp"]


def test_importing_every_hostile_list_keeps_the_target_clean(workspace: Path, run: Runner) -> None:
    """``subscribers import`` of each corpus file: one clear error or a merge; the target
    list stays free of problems and gains every recipient the oracle names."""
    before = {
        i.email.casefold()
        for i in scan_list(workspace / "subscribers" / "weekly.csv")
        if isinstance(i, Recipient)
    }
    expected = set(before)
    for name in FILES:
        result = run("subscribers", "import", str(CORPUS / name), "--into", "weekly")
        assert "Traceback" not in result.output
        if name in UNREADABLE:
            assert result.exit_code == 1 and result.output.startswith("Error: "), result.output
            continue
        expected |= MUST_RECEIVE[name]
    checked = run("subscribers", "check", "weekly")
    assert checked.exit_code == 0, checked.output
    after = {
        i.email.casefold()
        for i in scan_list(workspace / "subscribers" / "weekly.csv")
        if isinstance(i, Recipient)
    }
    assert expected <= after  # nobody valid lost (the list may hold more, e.g. IDN rows)
