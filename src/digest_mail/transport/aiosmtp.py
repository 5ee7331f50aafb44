"""The fallback SMTP connection: one aiosmtplib session (``[smtp] client = "aiosmtplib"``).

The pool (:mod:`digest_mail.transport.pool`) opens these when the relay is better served
by a widely used library than by our own client (``digest_mail.transport.smtpclient``,
the default): no PIPELINING, and aiosmtplib prepares every body itself (line endings,
dot-stuffing: two regex passes a message), so the builder's DATA-form bytes are not
asked for. This module only says what aiosmtplib reported; what each failure means is
decided in :mod:`digest_mail.transport.errors`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import aiosmtplib

from digest_mail.transport.errors import (
    SMTPUTF8_MISSING,
    STARTTLS_FOR_AUTH_HINT,
    DeliveryError,
    connection_lost,
    connection_refused,
    login_refused,
    no_password,
    not_connected,
    refusal,
    session_refused,
    tls_failed,
    unsendable,
)
from digest_mail.transport.relay import RelayConfig, is_loopback
from digest_mail.transport.wire import ascii_envelope

_TRANSIENT_ERRORS = (
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    ConnectionError,
    OSError,
)


class _StagedSMTP(aiosmtplib.SMTP):
    """aiosmtplib's SMTP, noting when a message reached DATA: from then on a lost session
    may have carried the final dot (aiosmtplib writes the body and the dot as soon as
    the 354 is in; a loss while waiting for the 354 is counted the same way, the safe
    side), so the failure is uncertain rather than retried."""

    in_data = False

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.in_data = True
        return await super().data(*args, **kwargs)


class AiosmtpConnection:
    """One aiosmtplib session to the relay, sending many messages until it drops."""

    # aiosmtplib dot-stuffs every body itself: hand it plain message bytes.
    takes_dot_stuffed = False

    def __init__(self, smtp: _StagedSMTP, relay: RelayConfig) -> None:
        self.smtp = smtp
        self.relay = relay
        self.messages_sent = 0

    @classmethod
    async def open(
        cls,
        relay: RelayConfig,
        *,
        password: str | None,
        timeout: float,
        tls_context: ssl.SSLContext,
    ) -> AiosmtpConnection:
        """Connect, EHLO, STARTTLS as the relay URL says, log in."""
        smtp = _StagedSMTP(
            hostname=relay.host,
            port=relay.port,
            timeout=timeout,
            use_tls=relay.implicit_tls,
            start_tls=relay.starttls if not relay.implicit_tls else False,
            tls_context=tls_context,
            local_hostname="localhost" if is_loopback(relay.host) else None,
        )
        try:
            await smtp.connect()
            if smtp.last_ehlo_response is None:
                # EHLO now, so 8BITMIME/SMTPUTF8 are known before the first message.
                await smtp.ehlo()
            if relay.username:
                if not relay.encrypted and not is_loopback(
                    relay.host
                ):  # pragma: no cover - parse forbids
                    raise session_refused(relay.display, "refusing to send credentials without TLS")
                if password is None:
                    raise no_password(relay.display, relay.username)
                await smtp.login(relay.username, password)
        except DeliveryError:
            await _abandon(smtp)
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            # The session is still up (and maybe TLS): end it politely so the TLS
            # transport and its socket are really closed.
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                await _abandon(smtp)
            raise login_refused(relay.display, relay.username, exc.code, exc.message) from None
        except aiosmtplib.SMTPException as exc:
            starttls_offered = smtp.is_connected and smtp.supports_extension("starttls")
            await _abandon(smtp)
            text = str(exc)
            if "AUTH" in text.upper() and not isinstance(exc.__cause__, ssl.SSLError):
                # Before the TLS test: aiosmtplib's "no AUTH" message suggests TLS.
                hint = "check [smtp] url and the relay's AUTH setup"
                if starttls_offered and not relay.encrypted:
                    hint = STARTTLS_FOR_AUTH_HINT
                raise session_refused(relay.display, text, hint=hint) from None
            if isinstance(exc.__cause__, ssl.SSLError) or "TLS" in text or "tls" in text:
                raise tls_failed(relay.display, text) from None
            if isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600:
                raise connection_refused(relay.display, exc.code, exc.message) from None
            unreachable = isinstance(exc, aiosmtplib.SMTPConnectError) and not isinstance(
                exc, aiosmtplib.SMTPConnectResponseError
            )
            raise not_connected(f"{relay.display}: {text}", unreachable=unreachable) from None
        except ssl.SSLError as exc:
            await _abandon(smtp)
            raise tls_failed(relay.display, str(exc)) from None
        except OSError as exc:
            await _abandon(smtp)
            raise not_connected(
                f"{relay.display}: cannot connect: {exc}", unreachable=True
            ) from None
        return cls(smtp, relay)

    @property
    def is_connected(self) -> bool:
        return self.smtp.is_connected

    def offers(self, keyword: str) -> bool:
        return self.smtp.supports_extension(keyword.lower())

    async def send(
        self, envelope_from: str, recipients: list[str], data: bytes
    ) -> dict[str, DeliveryError]:
        """Send one message; return the refused recipients when others were accepted,
        raise when the message went to nobody."""
        smtp = self.smtp
        options = ["BODY=8BITMIME"] if smtp.supports_extension("8bitmime") else []
        # Only a non-ASCII local part needs SMTPUTF8; an IDN domain goes as its A-label.
        envelope_from, recipients = ascii_envelope(envelope_from, recipients)
        if not (envelope_from.isascii() and all(r.isascii() for r in recipients)):
            if not smtp.supports_extension("smtputf8"):
                raise unsendable(SMTPUTF8_MISSING, recipient=recipients[0], about="ours")
            options.append("SMTPUTF8")
        smtp.in_data = False
        try:
            refused, _ = await smtp.sendmail(envelope_from, recipients, data, mail_options=options)
        except aiosmtplib.SMTPSenderRefused as exc:
            raise self._refusal(exc.code, exc.message, recipients[0], "sender") from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            raise self._refusal(first.code, first.message, first.recipient, "recipient") from None
        except aiosmtplib.SMTPDataError as exc:
            raise self._refusal(exc.code, exc.message, recipients[0], "message") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise self._refusal(exc.code, exc.message, recipients[0], "message") from None
        except ValueError as exc:  # aiosmtplib refuses an address it cannot send safely
            raise unsendable(str(exc), recipient=recipients[0]) from None
        except _TRANSIENT_ERRORS as exc:
            raise connection_lost(
                f"{exc or type(exc).__name__}",
                recipient=recipients[0],
                stage="message" if smtp.in_data else "",
            ) from None
        self.messages_sent += 1
        return {
            recipient: self._refusal(reply.code, reply.message, recipient, "recipient")
            for recipient, reply in refused.items()
        }

    def _refusal(self, code: int, message: str, recipient: str, stage: str) -> DeliveryError:
        return refusal(code, message, stage=stage, recipient=recipient, relay=self.relay.display)

    def abort(self) -> None:
        self.smtp.close()

    async def quit(self) -> None:
        if self.smtp.is_connected:
            try:
                await self.smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                self.smtp.close()


async def _abandon(smtp: aiosmtplib.SMTP) -> None:
    """Close a session that failed to start; one loop turn lets a half-open TLS
    transport actually release its socket."""
    smtp.close()
    await asyncio.sleep(0)
