"""Issue 14 item 6: STARTTLS response injection (the class of CVE-2011-0411, client side).

A relay (or anyone on the path) that answers STARTTLS with ``220 go ahead`` and more
replies in the same write had the pipelining client read those plaintext replies as the
answer to its EHLO inside TLS: ``250 AUTH LOGIN`` became the relay's extensions. The
server here is a small real one on 127.0.0.1 with a real TLS handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from digest_mail.transport.aiosmtp import AiosmtpConnection
from digest_mail.transport.errors import RelayError
from digest_mail.transport.pool import SmtpTransport
from digest_mail.transport.relay import parse_relay_url
from digest_mail.transport.smtpclient import SmtpConnection, SmtpTlsError
from test_transport_tls import certificate, server_context, trusting

__all__ = ["certificate"]  # the fixture, used by name

INJECTION = b"220 go ahead\r\n250-INJECTED\r\n250 AUTH LOGIN\r\n"


class StarttlsServer:
    """Greets, offers STARTTLS, answers it with ``reply_to_starttls`` in one write, then
    speaks TLS and records every command it reads there."""

    def __init__(self, context: ssl.SSLContext, reply_to_starttls: bytes) -> None:
        self.context = context
        self.reply = reply_to_starttls
        self.inside_tls: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> StarttlsServer:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 relay.example ESMTP\r\n")
            await reader.readline()  # EHLO
            writer.write(b"250-relay.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            await reader.readline()  # STARTTLS
            writer.write(self.reply)
            await writer.drain()
            await writer.start_tls(self.context)
            while line := await reader.readline():
                self.inside_tls.append(line)
                if line.upper().startswith(b"EHLO"):
                    writer.write(b"250-relay.example\r\n250 8BITMIME\r\n")
                elif line.upper().startswith(b"QUIT"):
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def injecting_server(
    certificate: tuple[Path, Path],
) -> AsyncIterator[StarttlsServer]:
    async with StarttlsServer(server_context(certificate), INJECTION) as server:
        yield server


async def test_replies_injected_after_the_starttls_220_are_refused(
    injecting_server: StarttlsServer, certificate: tuple[Path, Path]
) -> None:
    with pytest.raises(SmtpTlsError) as info:
        await SmtpConnection.open(
            "127.0.0.1",
            injecting_server.port,
            tls="starttls",
            ssl_context=trusting(certificate),
            username="digest",
            password="correct horse",
            timeout=5,
        )
    assert str(info.value) == (
        f"127.0.0.1:{injecting_server.port}: the relay sent data after its 220 reply to "
        "STARTTLS, before TLS (a STARTTLS response injection); not continuing"
    )
    # Nothing was sent inside TLS: no EHLO answered by the injected lines, no AUTH.
    assert injecting_server.inside_tls == []


async def test_a_clean_starttls_still_works(certificate: tuple[Path, Path]) -> None:
    async with StarttlsServer(server_context(certificate), b"220 go ahead\r\n") as server:
        connection = await SmtpConnection.open(
            "127.0.0.1",
            server.port,
            tls="starttls",
            ssl_context=trusting(certificate),
            timeout=5,
        )
        assert connection.tls
        assert "AUTH" not in connection.extensions
        await connection.quit()
    assert server.inside_tls[0].startswith(b"EHLO ")


async def test_the_aiosmtplib_client_discards_the_injected_replies(
    injecting_server: StarttlsServer, certificate: tuple[Path, Path]
) -> None:
    """The fallback client (``[smtp] client = "aiosmtplib"``) holds: the library drops
    what was buffered after the 220, so the relay's real EHLO reply (no AUTH) decides."""
    relay = parse_relay_url(f"smtp://digest@127.0.0.1:{injecting_server.port}?tls=starttls")
    transport = SmtpTransport(
        relay,
        connection=AiosmtpConnection,
        password="correct horse",
        size=1,
        tls_context=trusting(certificate),
    )
    with pytest.raises(RelayError) as info:
        await transport.send("digest@example.jp", ["taro@example.jp"], b"Subject: x\r\n\r\nx\r\n")
    await transport.close()
    assert "AUTH" in str(info.value) or "auth" in str(info.value).lower()
    sent = b"".join(injecting_server.inside_tls)
    assert sent.startswith(b"EHLO ") and b"AUTH" not in sent
