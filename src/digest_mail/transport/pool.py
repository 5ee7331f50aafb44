"""The fast SMTP transport: a pool of :class:`~digest_mail.transport.smtpclient.SmtpConnection`.

Same interface and the same failure classes as :class:`digest_mail.transport.smtp.SmtpTransport`
(the aiosmtplib pool), so the campaign cannot tell them apart; what differs is the cost per
message: one write of MAIL+RCPT+DATA when the relay offers PIPELINING, no regex over
the body (the message builder's bytes are CRLF already; :func:`prepare_data` only scans),
no address re-parsing. ``[smtp] client = "aiosmtplib"`` selects the other pool.
"""

from __future__ import annotations

import asyncio
import ssl

from digest_mail.transport.smtp import (
    DeliveryError,
    PermanentFailure,
    RateLimiter,
    RelayConfig,
    RelayError,
    SmtpTransport,
    TemporaryFailure,
    is_loopback,
    refusal,
    tls_failure_hint,
)
from digest_mail.transport.smtpclient import (
    SmtpAuthError,
    SmtpConnection,
    SmtpConnectionLost,
    SmtpError,
    SmtpRecipientsRefused,
    SmtpReplyError,
    SmtpTlsError,
    prepare_data,
)


def _detail(exc: SmtpError, relay: RelayConfig) -> str:
    """The client's message without its own host:port prefix (the relay URL says it)."""
    return exc.message.removeprefix(f"{relay.host}:{relay.port}: ")


class _Slot:
    """One pooled connection, opened on first use and again after a drop or a 421."""

    def __init__(self) -> None:
        self.connection: SmtpConnection | None = None

    def drop(self) -> None:
        if self.connection is not None:
            self.connection.abort()
        self.connection = None


class PipeliningSmtpTransport(SmtpTransport):
    """A pool of ``size`` pipelining connections to one relay, behind a rate limit.

    A drop-in for :class:`SmtpTransport` (hence the subclass, so the weighted multi-relay
    transport and ``open_transport``'s type take either); it shares none of its state.
    """

    kind = "smtp"
    # The campaign may hand this transport DotStuffedBytes: DATA that needs no preparing.
    takes_dot_stuffed = True

    def __init__(
        self,
        relay: RelayConfig,
        *,
        password: str | None = None,
        size: int = 8,
        timeout: float = 30.0,
        limiter: RateLimiter | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.relay = relay
        self.password = password
        self.timeout = timeout
        self.limiter = limiter or RateLimiter()
        self.tls_context = tls_context or ssl.create_default_context()
        self._slots = [_Slot() for _ in range(max(1, size))]
        # Last in, first out: an open connection is reused before another is opened.
        self._free: asyncio.Queue[_Slot] = asyncio.LifoQueue()
        for slot in self._slots:
            self._free.put_nowait(slot)
        self._ever_connected = False

    async def offers(self, keyword: str) -> bool:
        slot = await self._free.get()
        try:
            connection = await self._open(slot)
            return keyword.upper() in connection.extensions
        finally:
            self._free.put_nowait(slot)

    async def _open(self, slot: _Slot) -> SmtpConnection:
        if slot.connection is not None and slot.connection.is_connected:
            return slot.connection
        relay = self.relay
        if relay.username and self.password is None:
            raise RelayError(
                f"{relay.display}: no password for {relay.username!r}",
                hint="set DIGEST_MAIL_SMTP_PASSWORD or [smtp] password_file (owner-only)",
            )
        try:
            slot.connection = await SmtpConnection.open(
                relay.host,
                relay.port,
                tls="implicit" if relay.implicit_tls else "starttls" if relay.starttls else "none",
                ssl_context=self.tls_context,
                username=relay.username or None,
                password=self.password,
                timeout=self.timeout,
                local_hostname="localhost" if is_loopback(relay.host) else None,
            )
        except SmtpAuthError as exc:
            if exc.code is not None:
                raise RelayError(
                    f"{relay.display} refused the login for {relay.username!r}: {exc.code} "
                    f"{exc.reply}",
                    code=exc.code,
                    hint="check the username and DIGEST_MAIL_SMTP_PASSWORD",
                ) from None
            raise RelayError(f"{relay.display}: {_detail(exc, relay)}", hint=exc.hint) from None
        except SmtpTlsError as exc:
            detail = _detail(exc, relay)
            hint = tls_failure_hint(detail) if "TLS failed" in detail else exc.hint
            raise RelayError(f"{relay.display}: {detail}", hint=hint) from None
        except SmtpConnectionLost as exc:
            if not self._ever_connected:
                # Unreachable from the start: a configuration problem, not a hiccup.
                raise RelayError(
                    exc.message, hint="check [smtp] url and that the relay is running"
                ) from None
            raise TemporaryFailure(exc.message) from None
        except SmtpReplyError as exc:
            if not exc.temporary:
                raise RelayError(
                    f"{relay.display} refused the connection: {exc.code} {exc.reply}", code=exc.code
                ) from None
            raise TemporaryFailure(exc.message, code=exc.code) from None
        self._ever_connected = True
        return slot.connection

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        await self.limiter.acquire()
        slot = await self._free.get()
        try:
            connection = await self._open(slot)
            try:
                refused = await connection.send(
                    envelope_from, recipients, prepare_data(data), prepared=True
                )
            except SmtpError as exc:
                raise self._classify(exc, slot, envelope_from, recipients) from None
            if refused:
                # Several recipients, some refused: report the first, like the aiosmtplib pool.
                first = next(iter(refused.values()))
                raise self._classify(first, slot, envelope_from, recipients)
        finally:
            self._free.put_nowait(slot)

    def _classify(
        self, exc: SmtpError, slot: _Slot, envelope_from: str, recipients: list[str]
    ) -> DeliveryError:
        recipient = exc.recipient or recipients[0]
        if isinstance(exc, SmtpRecipientsRefused):
            first = next(iter(exc.errors.values()))
            return self._classify(first, slot, envelope_from, recipients)
        if isinstance(exc, SmtpConnectionLost):
            slot.drop()
            return TemporaryFailure(f"connection lost: {exc.message}", recipient=recipient)
        if exc.code == 421:
            slot.drop()  # the relay is closing this session: reconnect for the next message
        if exc.code is None:
            return PermanentFailure(exc.message, recipient=recipient, about=exc.about)
        return refusal(
            exc.code,
            exc.reply or exc.message,
            stage=exc.stage,
            recipient=recipient,
            relay=self.relay.display,
        )

    async def close(self) -> None:
        connections = [slot.connection for slot in self._slots if slot.connection is not None]
        await asyncio.gather(*(c.quit() for c in connections), return_exceptions=True)
        for slot in self._slots:
            slot.connection = None
