"""A real aiosmtpd server on 127.0.0.1 (port 0) for delivery tests, with fault hooks.

The server runs in its own thread and event loop, so the code under test can run its
own ``asyncio.run`` (as the CLI does). Every message it accepts is parsed with the
stdlib email parser and recorded. Faults are injected per test:

- ``server.reply_for(address, "451 4.7.1 try later", times=2)``: RCPT replies for one
  recipient (the next ``times`` transactions; ``times=None`` for always);
- ``server.drop_during_data(times=1)``: close the connection after the message data
  arrived, before replying (the message is not recorded: the client must retry);
- ``server.data_reply = callable(envelope) -> str | None``: any DATA reply.

Use the ``smtp_server`` fixture (registered in conftest) or ``SmtpServer()`` directly.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    message: EmailMessage


def parse_message(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


class Recorder:
    """The aiosmtpd handler: faults first, then record and parse."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.rcpt_replies: dict[str, list[str]] = {}
        self.always: dict[str, str] = {}
        self.drops = 0
        self.data_reply: Callable[[Envelope], str | None] | None = None
        self.transactions = 0
        self.on_message: Callable[[Received], None] | None = None
        self.parse = True  # False: keep raw bytes only (big sends), parse on demand

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        key = address.lower()
        with self.lock:
            if key in self.always:
                return self.always[key]
            queued = self.rcpt_replies.get(key)
            if queued:
                return queued.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.transactions += 1
            if self.drops > 0:
                self.drops -= 1
                drop = True
            else:
                drop = False
        if drop:
            assert server.transport is not None
            server.transport.abort()
            return "451 never seen: the connection is gone"
        if self.data_reply is not None:
            reply = self.data_reply(envelope)
            if reply is not None:
                return reply
        data = envelope.original_content or b""
        if isinstance(data, str):  # pragma: no cover - decode_data is off
            data = data.encode()
        message = parse_message(data) if self.parse else EmailMessage()
        item = Received(
            envelope_from=str(envelope.mail_from),
            recipients=tuple(envelope.rcpt_tos),
            data=data,
            message=message,
        )
        with self.lock:
            self.received.append(item)
        if self.on_message is not None:
            self.on_message(item)
        return "250 2.0.0 OK queued"


class SmtpServer:
    """aiosmtpd on 127.0.0.1, an OS-chosen port, in a background thread."""

    def __init__(
        self,
        *,
        auth: dict[str, str] | None = None,
        starttls: ssl.SSLContext | None = None,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> None:
        """``starttls``: offer and require STARTTLS; ``implicit_tls``: TLS from the first byte
        (smtps). With either, AUTH is only accepted over TLS, as a real relay does."""
        self.handler = Recorder()
        self.auth = auth
        self.starttls = starttls
        self.implicit_tls = implicit_tls
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="smtp-test-server", daemon=True
        )
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        if self.implicit_tls is not None:
            return f"smtps://127.0.0.1:{self.port}"
        return f"smtp://127.0.0.1:{self.port}" + ("?tls=starttls" if self.starttls else "")

    def _authenticator(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self.auth is not None
        ok = (
            isinstance(data, LoginPassword)
            and self.auth.get(data.login.decode()) == data.password.decode()
        )
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        options: dict[str, Any] = {}
        if self.auth is not None:
            # aiosmtpd only knows about TLS it negotiated itself (STARTTLS); with implicit
            # TLS the whole connection is already encrypted.
            options.update(
                authenticator=self._authenticator,
                auth_required=True,
                auth_require_tls=self.starttls is not None,
            )
        if self.starttls is not None:
            options.update(tls_context=self.starttls, require_starttls=True)
        with warnings.catch_warnings():
            # AUTH without TLS is the point of a loopback test server; aiosmtpd warns.
            warnings.simplefilter("ignore", UserWarning)
            return SMTP(
                self.handler,
                hostname="smtp.test.example.jp",
                ident="digest-mail test server",
                enable_SMTPUTF8=True,
                **options,
            )

    async def _start(self) -> None:
        self.server = await self.loop.create_server(
            self._protocol, "127.0.0.1", 0, ssl=self.implicit_tls
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def start(self) -> SmtpServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    # --- fault injection ---

    def reply_for(self, address: str, reply: str, *, times: int | None = 1) -> None:
        with self.handler.lock:
            if times is None:
                self.handler.always[address.lower()] = reply
            else:
                self.handler.rcpt_replies.setdefault(address.lower(), []).extend([reply] * times)

    def drop_during_data(self, times: int = 1) -> None:
        with self.handler.lock:
            self.handler.drops += times

    # --- what arrived ---

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def by_recipient(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for item in self.received:
            for rcpt in item.recipients:
                out.setdefault(rcpt.lower(), []).append(item)
        return out

    def counts(self) -> Counter[str]:
        return Counter(r.lower() for item in self.received for r in item.recipients)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()
