"""The one interface between the sender and wherever mail goes: :class:`Transport`.

The campaign hands finished message bytes to a transport and learns nothing else about
it; what it may ask is declared here, so no caller probes a transport with ``getattr``.
Implemented by :class:`~digest_mail.transport.capture.CaptureTransport` (a Maildir),
:class:`~digest_mail.transport.pool.SmtpTransport` (the pool of SMTP connections to one
relay) and :class:`~digest_mail.transport.pool.WeightedTransport` (several relays).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    """Sends finished messages; says what it can carry before the first one."""

    @property
    def description(self) -> str:
        """Where mail goes, for the report and prompts (``SMTP relay smtp://…``)."""
        ...

    @property
    def takes_dot_stuffed(self) -> bool:
        """Whether :meth:`send` takes ``DotStuffedBytes`` (data already in SMTP DATA
        form) as they are; the message builder makes them only for such a transport."""
        ...

    async def offers(self, keyword: str) -> bool:
        """Whether the transport carries what an SMTP extension (``8BITMIME``,
        ``SMTPUTF8``, ``PIPELINING``) stands for; a relay is asked (its EHLO reply)."""
        ...

    async def supports_8bit(self) -> bool:
        """Whether 8bit bodies go as they are (``8BITMIME``); else the campaign encodes
        bodies in base64."""
        ...

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        """Send one message; raises a ``digest_mail.transport.errors.DeliveryError``."""
        ...

    async def close(self) -> None: ...
