"""A test mail's unsubscribe links unsubscribe nobody; a test-send that reaches nobody
is an error. Walked as the editor did: test-send through the capture outbox, follow
both links of the mail on the real endpoint (GET and the RFC 8058 POST)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
from email.message import EmailMessage
from pathlib import Path

import aiohttp

from conftest import Runner
from delivery_draft import write_draft_folder
from digest_mail.audience.unsubscribe import make_token, read_token, signing_key, verify_token
from digest_mail.config import Workspace
from digest_mail.ledger.suppressions import list_suppressions
from ledger_rows import workspace_ledger

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _suppressed(ws: Workspace) -> list[str]:
    with workspace_ledger(ws) as ledger:
        return [s.address for s in list_suppressions(ledger)]


def _captured(ws: Workspace) -> list[EmailMessage]:
    messages = []
    for path in sorted((ws.outbox_dir / "new").iterdir()):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def _links(message: EmailMessage) -> tuple[str, str]:
    """The token of List-Unsubscribe's https link, and of the text part's footer link."""
    header = re.search(r"<https://[^>]+\?t=([^>]+)>", str(message["List-Unsubscribe"]))
    text = message.get_body(("plain",))
    assert header is not None and text is not None
    footer = re.search(r"配信停止: https://\S+\?t=(\S+)", text.get_content())
    assert footer is not None
    return header.group(1), footer.group(1)


async def test_a_test_mails_links_show_a_test_page_and_change_nothing(
    unsubscribe_endpoint: tuple[str, Workspace], run: Runner
) -> None:
    url, ws = unsubscribe_endpoint
    write_draft_folder(ws.root)
    # The commands run their own event loops: give them a thread of their own.
    tested = await asyncio.to_thread(run, "test-send", "2026-W48")
    assert tested.exit_code == 0, tested.output
    messages = _captured(ws)
    assert [m["To"].addresses[0].addr_spec for m in messages] == [
        "editors@example.jp",
        "sato.misaki@example.jp",
        "takahashi.ken@example.jp",
    ]
    header_token, footer_token = _links(messages[0])
    assert header_token == footer_token
    assert read_token(signing_key(ws), header_token).test
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params={"t": footer_token}) as response:
            assert response.status == 200
            page = await response.text()
        assert "テストメールのリンクです" in page
        assert "editors@example.jp の配信は停止されていません" in page
        assert "<form" not in page
        async with http.post(url, params={"t": header_token}, data=ONE_CLICK) as response:
            assert response.status == 200
            assert "テストメールのリンクです" in await response.text()
    assert _suppressed(ws) == []

    # The next test still reaches the editor; the CLI's --token path agrees.
    again = await asyncio.to_thread(run, "test-send", "2026-W48")
    assert again.exit_code == 0, again.output
    assert again.output.startswith("Test-sent 2026-W48 to staff: 3 sent,")
    by_token = await asyncio.to_thread(run, "unsubscribe", "--token", header_token)
    assert (by_token.exit_code, by_token.output) == (
        0,
        "the token is from a test mail to editors@example.jp: nothing changed "
        "(test mails unsubscribe nobody)\n",
    )
    assert _suppressed(ws) == []

    # A reader's mail still unsubscribes its reader.
    sent = await asyncio.to_thread(run, "send", "2026-W48", "--list", "weekly", "--yes")
    assert sent.exit_code == 0, sent.output
    reader = next(m for m in _captured(ws) if not str(m["Subject"]).startswith("[TEST]"))
    token, _ = _links(reader)
    assert not read_token(signing_key(ws), token).test
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, params={"t": token}, data=ONE_CLICK) as response,
    ):
        assert response.status == 200
        assert "配信を停止しました" in await response.text()
    assert _suppressed(ws) == [reader["To"].addresses[0].addr_spec.lower()]


def test_test_tokens_are_signed_and_never_pass_for_real_ones() -> None:
    key = b"k" * 32
    test = make_token(key, "staff", "editor@example.jp", test=True)
    real = make_token(key, "staff", "editor@example.jp")
    assert test != real
    assert read_token(key, test).test and not read_token(key, real).test
    assert verify_token(key, real) == ("staff", "editor@example.jp")
    # The test mark is under the signature: neither form can be made from the other.
    mac = real.partition(".")[2]
    forged = test.partition(".")[0] + "." + mac
    for token in (forged, real.partition(".")[0] + "." + test.partition(".")[2]):
        try:
            read_token(key, token)
        except Exception as exc:
            assert "bad signature" in str(exc)
        else:
            raise AssertionError("a re-marked token verified")
    try:
        verify_token(key, test)
    except Exception as exc:
        assert str(exc) == "the link is from a test mail: it unsubscribes nobody"
    else:
        raise AssertionError("verify_token accepted a test token")


def test_test_send_to_staff_who_are_all_suppressed_is_an_error(
    workspace: Path, run: Runner
) -> None:
    write_draft_folder(workspace)
    assert run("unsubscribe", "editors@example.jp").exit_code == 0
    partly = run("test-send", "2026-W48")
    assert partly.exit_code == 0, partly.output
    assert partly.output.startswith(
        "Test-sent 2026-W48 to staff: 2 sent, 0 deferred, 0 failed, 1 suppressed,"
    )
    for address in ("sato.misaki@example.jp", "takahashi.ken@example.jp"):
        assert run("unsubscribe", address).exit_code == 0
    nobody = run("test-send", "2026-W48")
    assert (nobody.exit_code, nobody.output) == (
        1,
        "Error: nobody to test-send to: editors@example.jp, sato.misaki@example.jp, "
        "takahashi.ken@example.jp are suppressed (unsubscribed or bounced), so the test "
        "reached no one\n"
        "Hint: if they want mail again: 'digest-mail suppressions remove editors@example.jp'; "
        "or test-send --to another address\n",
    )
    one = run("test-send", "2026-W48", "--to", "Sato.Misaki@example.jp")
    assert (one.exit_code, one.output) == (
        1,
        "Error: nobody to test-send to: Sato.Misaki@example.jp is suppressed (unsubscribed or "
        "bounced), so the test reached no one\n"
        "Hint: if they want mail again: 'digest-mail suppressions remove "
        "Sato.Misaki@example.jp'; or test-send --to another address\n",
    )
