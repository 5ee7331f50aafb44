"""The pool over pipelining connections (the default): the campaign's failure classes
over a real aiosmtpd that advertises PIPELINING, and the CRLF promise of the message
builder it relies on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from delivery_draft import EMAIL, NAME, SAMPLE_DRAFT, UNSUB, make_draft
from digest_mail.config import Settings
from digest_mail.mail.message import MessageTemplate
from digest_mail.transport.aiosmtp import AiosmtpConnection
from digest_mail.transport.errors import PermanentFailure, RelayError, TemporaryFailure
from digest_mail.transport.pipelining import PipeliningConnection
from digest_mail.transport.pool import ConnectionKind, SmtpTransport
from digest_mail.transport.relay import parse_relay_url
from digest_mail.transport.wire import CrlfBytes, DotStuffedBytes, prepare_data, unstuff_data
from test_smtpclient import Recorder, aiosmtpd_server  # noqa: F401 - the fixture

SENDER = "digest@example.jp"


def render(template: MessageTemplate, address: str, name: str) -> bytes:
    return template.render(
        to_address=address,
        to_name=name,
        unsubscribe_url=f"https://chrysanthemum-digest.example.jp/unsubscribe?t={address}",
        unsubscribe_mailto=f"mailto:unsubscribe@example.jp?subject={address}",
    )


@pytest.mark.parametrize("encoding", ["8bit", "base64"])
def test_template_output_is_crlf_only_and_marked(encoding: Any) -> None:
    template = MessageTemplate(
        SAMPLE_DRAFT, settings=Settings(), list_name="weekly", body_encoding=encoding
    )
    for name in ["山田 太郎", "", ".先頭ドット", 'O\'Brien, "Jr."', "😀" * 300]:
        data = render(template, "taro@example.jp", name)
        assert isinstance(data, CrlfBytes)
        crlf = data.count(b"\r\n")
        assert data.count(b"\n") == crlf == data.count(b"\r")
        # Trusting the marker gives the same DATA as the full scan would.
        assert prepare_data(data) == prepare_data(bytes(data))
        assert unstuff_data(prepare_data(data)) == data


# Tokens at line starts, pieces that start with '.', dots after every kind of chunk.
DOTTY_TEXT = f"{NAME}\n.dot after a value line\n{NAME}.{EMAIL}\n.{NAME}\n..\n{UNSUB}\n.\n"
DOTTY_HTML = f'<p>{NAME}</p>\n.{NAME}\n{NAME}\n.<b>{EMAIL}</b>\n<a href="{UNSUB}">x</a>\n'


@pytest.mark.parametrize(
    "draft",
    [
        SAMPLE_DRAFT,
        make_draft(text=DOTTY_TEXT, html=DOTTY_HTML),
        # A body whose very first line starts with '.', and one with a value first.
        make_draft(text="." + DOTTY_TEXT, html="." + DOTTY_HTML),
        make_draft(text=f"{EMAIL} " + DOTTY_TEXT, html=f"{EMAIL}" + DOTTY_HTML),
    ],
)
@pytest.mark.parametrize("encoding", ["8bit", "base64"])
def test_builder_dot_stuffing_equals_prepare_data(draft: Any, encoding: Any) -> None:
    template = MessageTemplate(
        draft, settings=Settings(), list_name="weekly", body_encoding=encoding
    )
    for name in ["山田 太郎", "", ".taro", "..", "x" * 990, ".ドット"]:
        values = {
            "to_address": "taro@example.jp",
            "to_name": name,
            "unsubscribe_url": "https://chrysanthemum-digest.example.jp/u?t=abc",
            "unsubscribe_mailto": "mailto:unsubscribe@example.jp?subject=abc",
            "message_id": "<fixed@example.jp>",
            "date": "Wed, 25 Nov 2026 22:00:00 +0000",
        }
        template.dot_stuffed = False
        plain = template.render(**values)
        template.dot_stuffed = True
        stuffed = template.render(**values)
        assert isinstance(stuffed, DotStuffedBytes)
        assert stuffed == prepare_data(bytes(plain))
        assert prepare_data(stuffed) is stuffed


def test_prepare_data_trusts_the_marker_only_for_line_endings() -> None:
    assert prepare_data(CrlfBytes(b".a\r\nb\r\n.\r\n")) == b"..a\r\nb\r\n..\r\n"
    assert prepare_data(b".a\nb") == b"..a\r\nb\r\n"


async def test_pool_delivers_and_classifies_over_pipelining(aiosmtpd_server: Any) -> None:  # noqa: F811
    handler = Recorder(
        pipelining=True,
        refuse={
            "busy@example.jp": "451 4.3.0 try again later",
            "gone@example.jp": "550 5.1.1 no such user",
        },
    )
    server = await aiosmtpd_server(handler)
    relay = parse_relay_url(f"smtp://127.0.0.1:{server.port}")
    pool = SmtpTransport(relay, size=4, timeout=5)
    template = MessageTemplate(SAMPLE_DRAFT, settings=Settings(), list_name="weekly")
    try:
        assert await pool.supports_8bit()
        addresses = [f"reader{i}@example.jp" for i in range(40)]
        sent = {a: render(template, a, "山田 太郎") for a in addresses}
        await asyncio.gather(*(pool.send(SENDER, [a], data) for a, data in sent.items()))
        with pytest.raises(TemporaryFailure) as busy:
            await pool.send(SENDER, ["busy@example.jp"], sent[addresses[0]])
        assert busy.value.code == 451 and busy.value.recipient == "busy@example.jp"
        with pytest.raises(PermanentFailure) as gone:
            await pool.send(SENDER, ["gone@example.jp"], sent[addresses[0]])
        assert gone.value.code == 550 and gone.value.bounced
        assert gone.value.message == "5.1.1 no such user"
        handler.refuse_sender = "553 5.7.1 sender not allowed"
        with pytest.raises(RelayError, match=r"refused us at MAIL FROM: 553 5\.7\.1 sender not"):
            await pool.send(SENDER, ["reader0@example.jp"], sent[addresses[0]])
    finally:
        await pool.close()
    received = {env.rcpt_tos[0]: env.original_content for env in handler.received}
    assert received == sent  # byte-identical, dot lines included, one each


async def test_pool_unreachable_relay_is_a_relay_error() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = SmtpTransport(parse_relay_url(f"smtp://127.0.0.1:{port}"), timeout=5)
    with pytest.raises(RelayError, match="cannot connect"):
        await pool.send(SENDER, ["a@example.jp"], b"Subject: x\r\n\r\nx\r\n")
    await pool.close()


@pytest.mark.parametrize("connection", [PipeliningConnection, AiosmtpConnection])
async def test_one_pool_reports_a_partly_refused_message_alike_for_both_clients(
    aiosmtpd_server: Any,  # noqa: F811
    connection: ConnectionKind,
) -> None:
    """Several recipients, one refused: the others get the message, and the pool raises
    the refusal, whichever connection kind it opens (the aiosmtplib pool used to drop it)."""
    handler = Recorder(refuse={"gone@example.jp": "550 5.1.1 no such user"})
    server = await aiosmtpd_server(handler)
    pool = SmtpTransport(
        parse_relay_url(f"smtp://127.0.0.1:{server.port}"), connection=connection, timeout=5
    )
    data = b"Subject: x\r\n\r\nx\r\n"
    try:
        with pytest.raises(PermanentFailure) as gone:
            await pool.send(SENDER, ["taro@example.jp", "gone@example.jp"], data)
        assert (gone.value.recipient, gone.value.code, gone.value.bounced) == (
            "gone@example.jp",
            550,
            True,
        )
        await pool.send(SENDER, ["hanako@example.jp"], data)  # the connection is still good
    finally:
        await pool.close()
    assert [env.rcpt_tos for env in handler.received] == [
        ["taro@example.jp"],
        ["hanako@example.jp"],
    ]
