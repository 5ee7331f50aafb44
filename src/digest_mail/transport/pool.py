"""The SMTP pool: ``size`` connections to one relay, each sending many messages.

One pool, whichever client speaks SMTP: it opens connections through a
:class:`ConnectionKind` (``[smtp] client`` picks it: the pipelining client by default,
:mod:`~digest_mail.transport.pipelining`, or aiosmtplib, :mod:`~digest_mail.transport.aiosmtp`)
and owns what both share: the rate limit, lending connections out (last in, first out,
so a small send opens no more than it needs), reconnecting after a 421 or a drop, and
the rule that a relay unreachable from the start is a configuration problem. Failures
come from the connections already decided (:mod:`digest_mail.transport.errors`).
:class:`WeightedTransport` spreads messages over several relays' pools.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Protocol

from digest_mail.transport.errors import (
    DeliveryError,
    TemporaryFailure,
    ends_session,
    never_reached,
)
from digest_mail.transport.pipelining import PipeliningConnection
from digest_mail.transport.ratelimit import RateLimiter
from digest_mail.transport.relay import RelayConfig


class Connection(Protocol):
    """One open SMTP session, as the pool uses it."""

    @property
    def messages_sent(self) -> int: ...
    @property
    def is_connected(self) -> bool: ...
    def offers(self, keyword: str) -> bool:
        """Whether the relay's EHLO reply names this extension (``8BITMIME`` …)."""
        ...

    async def send(
        self, envelope_from: str, recipients: list[str], data: bytes
    ) -> dict[str, DeliveryError]:
        """Send one message: the refused recipients when others were accepted; raises a
        :class:`DeliveryError` when it went to nobody."""
        ...

    def abort(self) -> None:
        """Close at once (after a 421 or a drop); the session is not used again."""
        ...

    async def quit(self) -> None:
        """Say goodbye politely; never raises."""
        ...


class ConnectionKind(Protocol):
    """A connection class: how the pool opens a session to a relay."""

    @property
    def takes_dot_stuffed(self) -> bool: ...
    async def open(
        self,
        relay: RelayConfig,
        *,
        password: str | None,
        timeout: float,
        tls_context: ssl.SSLContext,
    ) -> Connection: ...


class _Slot:
    """One pooled connection, opened on first use and again after a drop or a 421."""

    def __init__(self) -> None:
        self.connection: Connection | None = None

    def drop(self) -> None:
        if self.connection is not None:
            self.connection.abort()
        self.connection = None


class SmtpTransport:
    """A pool of ``size`` connections of one kind to one relay, behind a rate limit."""

    kind = "smtp"

    def __init__(
        self,
        relay: RelayConfig,
        *,
        connection: ConnectionKind = PipeliningConnection,
        password: str | None = None,
        size: int = 8,
        timeout: float = 30.0,
        limiter: RateLimiter | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.relay = relay
        self.connection = connection
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

    @property
    def description(self) -> str:
        return f"SMTP relay {self.relay.display}"

    @property
    def takes_dot_stuffed(self) -> bool:
        return self.connection.takes_dot_stuffed

    async def supports_8bit(self) -> bool:
        return await self.offers("8BITMIME")

    async def offers(self, keyword: str) -> bool:
        slot = await self._free.get()
        try:
            connection = await self._open(slot)
            return connection.offers(keyword)
        finally:
            self._free.put_nowait(slot)

    async def _open(self, slot: _Slot) -> Connection:
        if slot.connection is not None and slot.connection.is_connected:
            return slot.connection
        try:
            slot.connection = await self.connection.open(
                self.relay,
                password=self.password,
                timeout=self.timeout,
                tls_context=self.tls_context,
            )
        except TemporaryFailure as exc:
            if exc.unreachable and not self._ever_connected:
                raise never_reached(exc) from None
            raise
        self._ever_connected = True
        return slot.connection

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        await self.limiter.acquire()
        slot = await self._free.get()
        try:
            connection = await self._open(slot)
            try:
                refused = await connection.send(envelope_from, recipients, data)
            except DeliveryError as exc:
                if ends_session(exc):
                    slot.drop()  # reconnect for the next message
                raise
            if refused:
                # Several recipients, some refused: the message failed for the first.
                first = next(iter(refused.values()))
                if ends_session(first):
                    slot.drop()
                raise first
        finally:
            self._free.put_nowait(slot)

    async def close(self) -> None:
        connections = [slot.connection for slot in self._slots if slot.connection is not None]
        await asyncio.gather(*(c.quit() for c in connections), return_exceptions=True)
        for slot in self._slots:
            slot.connection = None


class WeightedTransport:
    """Several relays; each message goes to one, in proportion to the relays' weights."""

    kind = "smtp"

    def __init__(self, transports: Sequence[SmtpTransport]) -> None:
        self.transports = list(transports)
        self._cycle: list[SmtpTransport] = []
        for transport in self.transports:
            self._cycle.extend([transport] * transport.relay.weight)
        self._next = 0

    @property
    def description(self) -> str:
        return ", ".join(f"{t.description} (weight {t.relay.weight})" for t in self.transports)

    @property
    def takes_dot_stuffed(self) -> bool:
        return all(t.takes_dot_stuffed for t in self.transports)

    async def supports_8bit(self) -> bool:
        return await self.offers("8BITMIME")

    async def offers(self, keyword: str) -> bool:
        results = [await t.offers(keyword) for t in self.transports]
        return all(results)

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        transport = self._cycle[self._next % len(self._cycle)]
        self._next += 1
        await transport.send(envelope_from, recipients, data)

    async def close(self) -> None:
        for transport in self.transports:
            await transport.close()
