"""Transports: where finished message bytes go.

One small interface (:class:`Transport`: ``send`` and ``close``) with two kinds behind it:

- :class:`CaptureTransport` writes each message into a Maildir (``outbox/`` by default):
  the default, so nothing can reach real people by accident.
- :class:`SmtpTransport` is a pool of aiosmtplib connections to a relay, each sending
  many messages, behind a token-bucket rate limit.

Failures are classified once, here, into :class:`TemporaryFailure` (retry later),
:class:`PermanentFailure` (final for that recipient) and :class:`RelayError` (the relay
cannot be used at all: stop the campaign). Every refusal of both SMTP clients goes
through :func:`refusal`, which decides by whom a reply is about (RFC 3463 enhanced
status code first, the stage of the transaction second).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import re
import secrets
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from digest_mail.config import Workspace, mask_url, read_secret
from digest_mail.errors import ConfigError, DigestMailError
from digest_mail.transport.smtpclient import SMTPUTF8_MISSING, ascii_envelope

# --- errors ----------------------------------------------------------------------------


class DeliveryError(DigestMailError):
    """Sending one message failed; carries the SMTP reply when there was one."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        recipient: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.recipient = recipient

    @property
    def reply(self) -> str:
        return f"{self.code} {self.message}" if self.code else self.message


class TemporaryFailure(DeliveryError):
    """4xx, a dropped connection or a timeout: the same message may succeed later.

    ``unreachable``: no SMTP conversation at all (refused, no route, connect timeout).
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        recipient: str | None = None,
        hint: str | None = None,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message, code=code, recipient=recipient, hint=hint)
        self.unreachable = unreachable


class PermanentFailure(DeliveryError):
    """5xx for this recipient: final.

    ``about`` says whose the problem is (see :func:`classify_refusal`): ``mailbox`` (the
    reader's mailbox: suppress it), ``recipient`` (this reader, not their mailbox: a full
    mailbox, a recipient policy), ``unknown`` (no way to tell: the circuit breaker
    watches these) or ``ours`` (a gap of our own relay, such as a missing SMTPUTF8:
    never held against the reader).
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        recipient: str | None = None,
        hint: str | None = None,
        about: str = "unknown",
    ) -> None:
        super().__init__(message, code=code, recipient=recipient, hint=hint)
        self.about = about

    @property
    def bounced(self) -> bool:
        """The reader's mailbox does not exist or is disabled: suppress it."""
        return self.about == "mailbox"


class RelayError(DeliveryError):
    """The relay refuses us (AUTH, TLS, sender, client, policy, unreachable): stop the
    whole campaign; nothing is held against the readers."""


# --- whom a refusal is about -----------------------------------------------------------

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")
# Words in a reply that say the relay refuses us, whatever the stage it says it at
# (Postfix reports sender and client restrictions at RCPT by default).
_ABOUT_US = re.compile(
    r"\b(sender|client host|client|relay(ing)? (access )?denied|relay not permitted|"
    r"helo|authenticat\w*|auth required|not owned by user|unauthenticated)\b",
    re.IGNORECASE,
)
_ABOUT_MAILBOX = re.compile(
    r"\b(user unknown|unknown user|no such (user|mailbox|recipient)|unknown (mailbox|recipient)|"
    r"mailbox (unavailable|not found|disabled|does not exist)|does not exist|"
    r"invalid (mailbox|recipient)|recipient not found|user not found|account disabled)\b",
    re.IGNORECASE,
)
_AUTH_CODES = {530, 534, 535, 538}
STAGE_NAMES = {
    "connect": "the greeting",
    "sender": "MAIL FROM",
    "recipient": "RCPT TO",
    "data": "DATA",
    "message": "the end of the message",
}


def enhanced_status(text: str) -> tuple[int, int, int] | None:
    """The RFC 3463 status code a reply text starts with (``5.1.1 …``), if any."""
    match = _ENHANCED.match(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def classify_refusal(code: int, text: str, *, stage: str, recipient: str | None = None) -> str:
    """Whom a permanent (5xx) reply is about: ``mailbox``, ``recipient``, ``us`` or
    ``unknown``.

    The enhanced status code decides first (RFC 3463: X.1 addressing, X.2 mailbox, X.3
    mail system, X.4 routing, X.5 protocol, X.6 content, X.7 security and policy); the
    stage second: a refusal at the greeting, MAIL, DATA or after the message is about us
    unless a mailbox status says otherwise; at RCPT, only the reply's words can tell a
    refused sender or client from a refused reader. docs/relays.md has the table.
    """
    status = enhanced_status(text)
    names_us = _ABOUT_US.search(text) is not None
    names_recipient = "recipient" in text.lower() or (
        recipient is not None and recipient.lower() in text.lower()
    )
    if status is not None:
        _, subject, detail = status
        if subject == 1:
            if detail in (7, 8) or (names_us and not names_recipient):
                return "us"  # the sender's address or domain
            return "mailbox"
        if subject == 2:
            return "mailbox" if detail in (0, 1) else "recipient"
        if subject in (3, 5, 6):
            return "us"  # the relay's own state, the protocol, our message
        if subject in (4, 7):
            if names_us or code in _AUTH_CODES:
                return "us"
            return "recipient" if names_recipient else "us"
        return "unknown"
    if code in _AUTH_CODES or names_us:
        return "us"
    if stage != "recipient":
        return "us"
    if _ABOUT_MAILBOX.search(text):
        return "mailbox"
    if code == 552:
        return "recipient"  # storage exceeded for this mailbox
    return "unknown"


def _refusal_hint(code: int, text: str) -> str:
    lower = text.lower()
    status = enhanced_status(text)
    if (
        code in _AUTH_CODES
        or (status is not None and status[1:] in ((7, 0), (7, 8)))
        or ("authenticat" in lower)
    ):
        return (
            "the relay wants a login: put the user in the URL (smtp://USER@host:587) or "
            "[smtp] username, and set DIGEST_MAIL_SMTP_PASSWORD"
        )
    if "sender" in lower or (status is not None and status[1:2] == (1,)):
        return (
            "check [newsletter] from and the relay's sender policy (with a login, the "
            "addresses that login may send as)"
        )
    if "client" in lower or "relay" in lower:
        return (
            "the relay does not accept mail from this host: log in (user in [smtp] url, "
            "DIGEST_MAIL_SMTP_PASSWORD) or allow this host in the relay's restrictions"
        )
    return "the relay refused us, not a reader: fix the relay's policy or [smtp] url"


def refusal(
    code: int,
    text: str,
    *,
    stage: str,
    recipient: str,
    relay: str,
    hint: str | None = None,
) -> DeliveryError:
    """The failure for a refusal at ``stage`` (connect, sender, recipient, data, message):
    4xx temporary; 5xx about the reader fails that recipient; 5xx about us stops the
    campaign (:class:`RelayError`). The one place both SMTP clients classify replies."""
    text = " ".join(text.split())
    if code < 500:
        return TemporaryFailure(text, code=code, recipient=recipient)
    about = classify_refusal(code, text, stage=stage, recipient=recipient)
    if about == "us":
        return RelayError(
            f"{relay} refused us at {STAGE_NAMES.get(stage, stage)}: {code} {text}",
            code=code,
            recipient=recipient,
            hint=hint or _refusal_hint(code, text),
        )
    return PermanentFailure(text, code=code, recipient=recipient, about=about)


# --- clock -----------------------------------------------------------------------------


class Clock(Protocol):
    """Time as the sender sees it; tests inject one that never sleeps on real time."""

    def monotonic(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class RateLimiter:
    """Token buckets: at most ``per_second`` messages a second and ``per_hour`` an hour.

    0 means unlimited. The hourly bucket holds one minute's worth so a burst can never
    spend the whole hour at once.
    """

    def __init__(
        self, *, per_second: float = 0.0, per_hour: int = 0, clock: Clock | None = None
    ) -> None:
        self.clock = clock or SystemClock()
        self._buckets: list[list[float]] = []  # [rate per second, capacity, tokens, last]
        now = self.clock.monotonic()
        if per_second > 0:
            capacity = max(1.0, per_second)
            self._buckets.append([per_second, capacity, capacity, now])
        if per_hour > 0:
            capacity = max(1.0, per_hour / 60)
            self._buckets.append([per_hour / 3600, capacity, capacity, now])
        self._lock = asyncio.Lock()

    @property
    def limited(self) -> bool:
        return bool(self._buckets)

    async def acquire(self) -> None:
        if not self._buckets:
            return
        async with self._lock:
            while True:
                now = self.clock.monotonic()
                wait = 0.0
                for bucket in self._buckets:
                    rate, capacity, tokens, last = bucket
                    tokens = min(capacity, tokens + (now - last) * rate)
                    bucket[2], bucket[3] = tokens, now
                    if tokens < 1 - 1e-9:  # float dust must not become a zero sleep
                        wait = max(wait, (1 - tokens) / rate)
                if wait <= 0:
                    for bucket in self._buckets:
                        bucket[2] -= 1
                    return
                await self.clock.sleep(wait)


# --- the interface ---------------------------------------------------------------------


@runtime_checkable
class Transport(Protocol):
    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None: ...
    async def close(self) -> None: ...


async def supports_8bit(transport: Transport) -> bool:
    """Whether the transport carries 8bit bodies (asks the relay's EHLO for SMTP)."""
    return await offers(transport, "8BITMIME")


async def offers(transport: Transport, keyword: str) -> bool:
    """Whether the transport offers an SMTP extension (asks the relay's EHLO); capture
    takes anything."""
    probe: Callable[[str], Awaitable[bool]] | None = getattr(transport, "offers", None)
    return True if probe is None else await probe(keyword)


def needs_smtputf8(address: str) -> bool:
    """Only a non-ASCII local part needs SMTPUTF8; an IDN domain goes as its A-label."""
    local, _, _ = address.rpartition("@")
    return not local.isascii()


# --- capture ---------------------------------------------------------------------------


class MaildirWriter:
    """Writes exact message bytes into a Maildir (tmp/ then rename into new/).

    The envelope is not written into the message (its bytes stay exactly what was signed
    and sent); each delivery appends one JSON line ``{"file", "from", "to"}`` to
    ``envelopes.jsonl`` in the Maildir's root.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # Captured mail holds every reader's address and unsubscribe token: owner-only.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in ("tmp", "new", "cur"):
            (directory / sub).mkdir(mode=0o700, exist_ok=True)
        self._host = socket.gethostname().replace("/", "_").replace(":", "_")
        self._log = open(directory / "envelopes.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def deliver(self, envelope_from: str, recipients: Sequence[str], data: bytes) -> str:
        name = f"{time.time_ns()}.{os.getpid()}_{secrets.token_hex(6)}.{self._host}"
        tmp = self.directory / "tmp" / name
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, self.directory / "new" / name)
        self._log.write(
            json.dumps({"file": name, "from": envelope_from, "to": list(recipients)}) + "\n"
        )
        self._log.flush()
        return name

    def close(self) -> None:
        self._log.close()


class CaptureTransport:
    """Mail goes to a Maildir on disk; nothing leaves the machine."""

    kind = "capture"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._writer = MaildirWriter(directory)

    @property
    def description(self) -> str:
        return f"capture to {self.directory}"

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        self._writer.deliver(envelope_from, recipients, data)

    async def close(self) -> None:
        self._writer.close()


# --- SMTP ------------------------------------------------------------------------------

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RelayConfig:
    """One relay parsed from ``[smtp] url``."""

    url: str
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str
    weight: int = 1

    @property
    def encrypted(self) -> bool:
        return self.implicit_tls or self.starttls

    @property
    def display(self) -> str:
        """``smtps://127.0.0.1:465 (user digest@example.jp)``: the login is not written
        into the URL, where an address-shaped user made ``digest@example.jp@host``."""
        scheme = "smtps" if self.implicit_tls else "smtp"
        host = f"[{self.host}]" if ":" in self.host else self.host
        tls = "?tls=starttls" if self.starttls and is_loopback(self.host) else ""
        user = f" (user {self.username})" if self.username else ""
        return f"{scheme}://{host}:{self.port}{tls}{user}"


def parse_relay_url(url: str, *, username: str = "") -> RelayConfig:
    """``smtp://user@host:587`` (STARTTLS), ``smtps://host:465`` (implicit TLS).

    Plain SMTP is only for loopback relays (a local Postfix, ``dev-smtp``); add
    ``?tls=starttls`` to insist on STARTTLS there too. ``?weight=N`` weights this relay
    when several are configured.
    """
    shown = mask_url(url)  # every message below shows this, never the password
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - parses the port: a bad one raises here
    except ValueError:
        raise ConfigError(f"bad port in {shown!r}", key="smtp.url") from None
    if parts.password is not None:
        raise ConfigError(
            f"the SMTP URL {shown!r} must not contain a password",
            key="smtp.url",
            hint="set DIGEST_MAIL_SMTP_PASSWORD or [smtp] password_file (owner-only)",
        )
    scheme = parts.scheme.lower()
    if scheme not in {"smtp", "smtps"} or not parts.hostname:
        raise ConfigError(
            f"{shown!r} is not an SMTP relay URL",
            key="smtp.url",
            hint="use smtp://user@host:587 (STARTTLS), smtps://host:465 or capture",
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"tls", "weight"}
    if unknown:
        raise ConfigError(f"unknown URL option {sorted(unknown)[0]!r} in {shown!r}", key="smtp.url")
    host = parts.hostname
    implicit = scheme == "smtps"
    try:
        port = parts.port or (465 if implicit else 587)
        weight = int(query.get("weight", "1"))
    except ValueError:
        raise ConfigError(f"bad port or weight in {shown!r}", key="smtp.url") from None
    if weight < 1:
        raise ConfigError(f"weight must be at least 1 in {shown!r}", key="smtp.url")
    tls = query.get("tls", "")
    if tls not in {"", "starttls"}:
        raise ConfigError(f"tls={tls!r}: the only option is tls=starttls", key="smtp.url")
    starttls = not implicit and (tls == "starttls" or not is_loopback(host))
    return RelayConfig(
        url=url,
        host=host,
        port=port,
        implicit_tls=implicit,
        starttls=starttls,
        username=unquote(parts.username or "") or username,
        weight=weight,
    )


def _split_urls(value: str) -> list[str]:
    return [u.strip() for u in value.replace(",", " ").split() if u.strip()]


STARTTLS_FOR_AUTH_HINT = (
    "the relay offers AUTH only after STARTTLS: add ?tls=starttls to [smtp] url "
    "(smtp://USER@host:PORT?tls=starttls)"
)


def tls_failure_hint(text: str) -> str:
    """What to do about a failed TLS handshake, from its error text."""
    lower = text.lower()
    if "mismatch" in lower:
        return "the certificate is not for this host: use the name it was issued for in [smtp] url"
    if "certificate verify failed" in lower or "certificate_verify_failed" in lower:
        return (
            "the relay's certificate is not trusted here: if a private CA signed it, set "
            "[smtp] ca_file to that CA's PEM file (or SSL_CERT_FILE)"
        )
    return "the relay must offer a valid certificate (or fix [smtp] url)"


_TRANSIENT_ERRORS = (
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
    ConnectionError,
    OSError,
)


class _Connection:
    """One SMTP session, reused for many messages; reconnects after a drop or 421."""

    def __init__(
        self, relay: RelayConfig, *, password: str | None, timeout: float, tls: ssl.SSLContext
    ) -> None:
        self.relay = relay
        self.password = password
        self.timeout = timeout
        self.tls = tls
        self.smtp: aiosmtplib.SMTP | None = None
        self.sent = 0

    async def connect(self) -> aiosmtplib.SMTP:
        if self.smtp is not None and self.smtp.is_connected:
            return self.smtp
        relay = self.relay
        smtp = aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            timeout=self.timeout,
            use_tls=relay.implicit_tls,
            start_tls=relay.starttls if not relay.implicit_tls else False,
            tls_context=self.tls,
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
                    raise RelayError(f"{relay.display}: refusing to send credentials without TLS")
                if self.password is None:
                    raise RelayError(
                        f"{relay.display}: no password for {relay.username!r}",
                        hint="set DIGEST_MAIL_SMTP_PASSWORD or [smtp] password_file (owner-only)",
                    )
                await smtp.login(relay.username, self.password)
        except RelayError:
            await _abandon(smtp)
            raise
        except aiosmtplib.SMTPAuthenticationError as exc:
            # The session is still up (and maybe TLS): end it politely so the TLS
            # transport and its socket are really closed.
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                await _abandon(smtp)
            raise RelayError(
                f"{relay.display} refused the login for {relay.username!r}: {exc.code} "
                f"{exc.message}",
                code=exc.code,
                hint="check the username and DIGEST_MAIL_SMTP_PASSWORD",
            ) from None
        except aiosmtplib.SMTPException as exc:
            starttls_offered = smtp.is_connected and smtp.supports_extension("starttls")
            await _abandon(smtp)
            text = str(exc)
            if "AUTH" in text.upper() and not isinstance(exc.__cause__, ssl.SSLError):
                # Before the TLS test: aiosmtplib's "no AUTH" message suggests TLS.
                hint = "check [smtp] url and the relay's AUTH setup"
                if starttls_offered and not relay.encrypted:
                    hint = STARTTLS_FOR_AUTH_HINT
                raise RelayError(f"{relay.display}: {text}", hint=hint) from None
            if isinstance(exc.__cause__, ssl.SSLError) or "TLS" in text or "tls" in text:
                raise RelayError(
                    f"{relay.display}: TLS failed: {text}", hint=tls_failure_hint(text)
                ) from None
            if isinstance(exc, aiosmtplib.SMTPResponseException) and 500 <= exc.code < 600:
                raise RelayError(
                    f"{relay.display} refused the connection: {exc.code} {exc.message}",
                    code=exc.code,
                ) from None
            unreachable = isinstance(exc, aiosmtplib.SMTPConnectError) and not isinstance(
                exc, aiosmtplib.SMTPConnectResponseError
            )
            raise TemporaryFailure(f"{relay.display}: {text}", unreachable=unreachable) from None
        except ssl.SSLError as exc:
            await _abandon(smtp)
            raise RelayError(
                f"{relay.display}: TLS failed: {exc}", hint=tls_failure_hint(str(exc))
            ) from None
        except OSError as exc:
            await _abandon(smtp)
            raise TemporaryFailure(
                f"{relay.display}: cannot connect: {exc}", unreachable=True
            ) from None
        self.smtp = smtp
        self.sent = 0
        return smtp

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        smtp = await self.connect()
        options = ["BODY=8BITMIME"] if smtp.supports_extension("8bitmime") else []
        # Only a non-ASCII local part needs SMTPUTF8; an IDN domain goes as its A-label.
        envelope_from, recipients = ascii_envelope(envelope_from, recipients)
        if not (envelope_from.isascii() and all(r.isascii() for r in recipients)):
            if not smtp.supports_extension("smtputf8"):
                raise PermanentFailure(
                    SMTPUTF8_MISSING,
                    recipient=recipients[0],
                    about="ours",
                )
            options.append("SMTPUTF8")
        try:
            _, _ = await smtp.sendmail(envelope_from, recipients, data, mail_options=options)
        except aiosmtplib.SMTPSenderRefused as exc:
            raise _classify(exc.code, exc.message, recipients[0], self, "sender") from None
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            raise _classify(first.code, first.message, first.recipient, self, "recipient") from None
        except aiosmtplib.SMTPDataError as exc:
            raise _classify(exc.code, exc.message, recipients[0], self, "message") from None
        except aiosmtplib.SMTPResponseException as exc:
            raise _classify(exc.code, exc.message, recipients[0], self, "message") from None
        except ValueError as exc:  # aiosmtplib refuses an address it cannot send safely
            raise PermanentFailure(str(exc), recipient=recipients[0]) from None
        except _TRANSIENT_ERRORS as exc:
            self.drop()
            raise TemporaryFailure(
                f"connection lost: {exc or type(exc).__name__}", recipient=recipients[0]
            ) from None
        self.sent += 1

    def drop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
        self.smtp = None

    async def quit(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError):
                smtp.close()


async def _abandon(smtp: aiosmtplib.SMTP) -> None:
    """Close a session that failed to start; one loop turn lets a half-open TLS
    transport actually release its socket."""
    smtp.close()
    await asyncio.sleep(0)


def _classify(
    code: int, message: str, recipient: str, conn: _Connection, stage: str
) -> DeliveryError:
    if code == 421:
        conn.drop()  # the relay is closing this session: reconnect for the next message
    return refusal(code, message, stage=stage, recipient=recipient, relay=conn.relay.display)


class SmtpTransport:
    """A pool of ``size`` connections to one relay, each sending many messages."""

    kind = "smtp"

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
        self.limiter = limiter or RateLimiter()
        tls = tls_context or ssl.create_default_context()
        # Last in, first out: the connection just used (open) goes next, so a send of a
        # few messages opens no more connections than it needs at once.
        self._idle: asyncio.Queue[_Connection] = asyncio.LifoQueue()
        self._all = [
            _Connection(relay, password=password, timeout=timeout, tls=tls)
            for _ in range(max(1, size))
        ]
        for conn in self._all:
            self._idle.put_nowait(conn)
        self._ever_connected = False

    @property
    def description(self) -> str:
        return f"SMTP relay {self.relay.display}"

    async def supports_8bit(self) -> bool:
        return await self.offers("8BITMIME")

    async def offers(self, keyword: str) -> bool:
        conn = await self._idle.get()
        try:
            smtp = await self._connect(conn)
            return smtp.supports_extension(keyword.lower())
        finally:
            self._idle.put_nowait(conn)

    async def _connect(self, conn: _Connection) -> aiosmtplib.SMTP:
        try:
            smtp = await conn.connect()
        except TemporaryFailure as exc:
            if exc.unreachable and not self._ever_connected:
                # Unreachable from the start: a configuration problem, not a hiccup (a
                # relay that answers 421 at the greeting is busy: that one is retried).
                raise RelayError(
                    exc.message, hint="check [smtp] url and that the relay is running"
                ) from None
            raise
        self._ever_connected = True
        return smtp

    async def send(self, envelope_from: str, recipients: list[str], data: bytes) -> None:
        await self.limiter.acquire()
        conn = await self._idle.get()
        try:
            await self._connect(conn)
            await conn.send(envelope_from, recipients, data)
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        await asyncio.gather(*(conn.quit() for conn in self._all), return_exceptions=True)


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


def describe_transport(workspace: Workspace) -> str:
    """Where mail would go, for prompts and --dry-run (opens nothing)."""
    url = workspace.settings.smtp.url.strip()
    if url in {"", "capture"}:
        return f"capture to {workspace.outbox_dir} (nothing leaves this machine)"
    relays = [
        parse_relay_url(u, username=workspace.settings.smtp.username) for u in _split_urls(url)
    ]
    return ", ".join(f"SMTP relay {r.display}" for r in relays)


def _pool_class(client: str) -> type[SmtpTransport]:
    """``[smtp] client``: the pipelining client (default, see smtppool) or aiosmtplib."""
    if client == "aiosmtplib":
        return SmtpTransport
    if client == "pipelining":
        from digest_mail.transport.pool import PipeliningSmtpTransport  # imports this module

        return PipeliningSmtpTransport
    raise ConfigError(
        f"{client!r} is not an SMTP client",
        key="smtp.client",
        hint='use "pipelining" (default) or "aiosmtplib"',
    )


def open_transport(
    workspace: Workspace,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    clock: Clock | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> CaptureTransport | SmtpTransport | WeightedTransport:
    """The transport ``[smtp] url`` names: capture (default) or an SMTP relay pool."""
    smtp = workspace.settings.smtp
    url = smtp.url.strip()
    if url in {"", "capture"}:
        return CaptureTransport(workspace.outbox_dir)
    relays = [parse_relay_url(u, username=smtp.username) for u in _split_urls(url)]
    pool = _pool_class(smtp.client)
    password = read_secret(
        variable="DIGEST_MAIL_SMTP_PASSWORD", file=smtp.password_file, what="SMTP password"
    )
    context = tls_context or ssl.create_default_context()
    ca_file = workspace.ca_file
    if ca_file is not None and tls_context is None:
        try:
            context.load_verify_locations(cafile=str(ca_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"{ca_file} is not a PEM file of CA certificates ({exc})",
                key="smtp.ca_file",
                hint="give the PEM file of the CA that signed the relay's certificate",
            ) from None
    if smtp.insecure_skip_verify:
        print(
            "WARNING: [smtp] insecure_skip_verify is on: the relay's TLS certificate is NOT "
            "checked; anyone on the path can read this mail and the password.",
            file=sys.stderr,
        )
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    size = concurrency or smtp.concurrency
    transports = []
    for relay in relays:
        share = max(1, round(size * relay.weight / sum(r.weight for r in relays)))
        limiter = RateLimiter(
            per_second=(rate if rate is not None else smtp.rate)
            * relay.weight
            / sum(r.weight for r in relays),
            per_hour=smtp.rate_per_hour * relay.weight // sum(r.weight for r in relays),
            clock=clock,
        )
        transports.append(
            pool(
                relay,
                password=password,
                size=share,
                timeout=smtp.timeout,
                limiter=limiter,
                tls_context=context,
            )
        )
    if len(transports) == 1:
        return transports[0]
    return WeightedTransport(transports)
