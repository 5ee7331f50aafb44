"""The default SMTP connection: our pipelining client (``[smtp] client = "pipelining"``).

:class:`PipeliningConnection` is what the pool (:mod:`digest_mail.transport.pool`) sees
of one :class:`~digest_mail.transport.smtpclient.SmtpConnection`: opened for a
:class:`~digest_mail.transport.relay.RelayConfig`, sending the builder's bytes as they
are when they are already in DATA form (``takes_dot_stuffed``), and reporting the
client's typed errors as the failures :mod:`digest_mail.transport.errors` decides on.
The client itself knows nothing of relays, pools or campaigns.
"""

from __future__ import annotations

import ssl

from digest_mail.transport.errors import (
    DeliveryError,
    connection_lost,
    connection_refused,
    login_refused,
    no_password,
    not_connected,
    refusal,
    session_refused,
    tls_failure_hint,
    unsendable,
)
from digest_mail.transport.relay import RelayConfig, is_loopback
from digest_mail.transport.smtpclient import (
    SmtpAuthError,
    SmtpConnection,
    SmtpConnectionLost,
    SmtpError,
    SmtpRecipientsRefused,
    SmtpReplyError,
    SmtpTlsError,
)
from digest_mail.transport.wire import prepare_data


class PipeliningConnection:
    """One pipelining SMTP session to the relay, sending many messages until it drops."""

    # The builder may hand over DotStuffedBytes: DATA that needs no preparing.
    takes_dot_stuffed = True

    def __init__(self, session: SmtpConnection, relay: RelayConfig) -> None:
        self.session = session
        self.relay = relay

    @classmethod
    async def open(
        cls,
        relay: RelayConfig,
        *,
        password: str | None,
        timeout: float,
        tls_context: ssl.SSLContext,
    ) -> PipeliningConnection:
        """Connect, EHLO, STARTTLS as the relay URL says, log in."""
        if relay.username and password is None:
            raise no_password(relay.display, relay.username)
        try:
            session = await SmtpConnection.open(
                relay.host,
                relay.port,
                tls="implicit" if relay.implicit_tls else "starttls" if relay.starttls else "none",
                ssl_context=tls_context,
                username=relay.username or None,
                password=password,
                timeout=timeout,
                local_hostname="localhost" if is_loopback(relay.host) else None,
            )
        except SmtpAuthError as exc:
            if exc.code is not None:
                raise login_refused(relay.display, relay.username, exc.code, exc.reply) from None
            raise session_refused(relay.display, _detail(exc, relay), hint=exc.hint) from None
        except SmtpTlsError as exc:
            detail = _detail(exc, relay)
            hint = tls_failure_hint(detail) if "TLS failed" in detail else exc.hint
            raise session_refused(relay.display, detail, hint=hint) from None
        except SmtpConnectionLost as exc:
            raise not_connected(exc.message, unreachable=True) from None
        except SmtpReplyError as exc:
            if not exc.temporary:
                raise connection_refused(relay.display, exc.code, exc.reply) from None
            raise not_connected(exc.message, code=exc.code) from None
        return cls(session, relay)

    @property
    def is_connected(self) -> bool:
        return self.session.is_connected

    @property
    def messages_sent(self) -> int:
        return self.session.messages_sent

    def offers(self, keyword: str) -> bool:
        return keyword.upper() in self.session.extensions

    async def send(
        self, envelope_from: str, recipients: list[str], data: bytes
    ) -> dict[str, DeliveryError]:
        """Send one message; return the refused recipients when others were accepted,
        raise when the message went to nobody."""
        try:
            refused = await self.session.send(
                envelope_from, recipients, prepare_data(data), prepared=True
            )
        except SmtpError as exc:
            raise self._failure(exc, recipients) from None
        if not refused:
            return {}
        return {address: self._failure(exc, recipients) for address, exc in refused.items()}

    def _failure(self, exc: SmtpError, recipients: list[str]) -> DeliveryError:
        recipient = exc.recipient or recipients[0]
        if isinstance(exc, SmtpRecipientsRefused):
            return self._failure(next(iter(exc.errors.values())), recipients)
        if isinstance(exc, SmtpConnectionLost):
            return connection_lost(exc.message, recipient=recipient, stage=exc.stage)
        if exc.code is None:
            return unsendable(exc.message, recipient=recipient, about=exc.about)
        return refusal(
            exc.code,
            exc.reply or exc.message,
            stage=exc.stage,
            recipient=recipient,
            relay=self.relay.display,
        )

    def abort(self) -> None:
        self.session.abort()

    async def quit(self) -> None:
        await self.session.quit()


def _detail(exc: SmtpError, relay: RelayConfig) -> str:
    """The client's message without its own host:port prefix (the relay URL says it)."""
    return exc.message.removeprefix(f"{relay.host}:{relay.port}: ")
