"""A small asyncio SMTP client built for throughput: one connection, many messages.

Why not aiosmtplib alone: it sends every command lock-step and runs two regex passes
over each body (line endings, dot-stuffing). Here a message costs one write of
``MAIL FROM`` + ``RCPT TO`` … + ``DATA`` when the server advertises PIPELINING
(RFC 2920), one read of their replies, then one write of the already dot-stuffed body.
Servers without PIPELINING get the same conversation lock-step.

Every refusal is a typed :class:`SmtpError` that carries the reply code, the server's
text and the recipient it concerns: 4xx is :class:`SmtpTemporaryError`, 5xx
:class:`SmtpPermanentError`, a dropped connection :class:`SmtpConnectionLost`. What a
failure means for a campaign is not decided here: the pool's connection
(:mod:`digest_mail.transport.pipelining`) hands it to :mod:`digest_mail.transport.errors`.

Long on purpose: this is one state machine seen from two sides. The reply reader (an
``asyncio.Protocol``) does part of the conversation itself: when the pipelined replies
to MAIL, RCPT and DATA all accept, it writes the body from its read callback and re-arms
the timeout, and after STARTTLS it is the check that no plaintext was queued. The
session (:class:`SmtpConnection`) sets that up and reads what the reader left; the
errors are raised by both. Split, each half would have to expose the other's internals.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import re
import ssl
import typing
from collections import deque
from collections.abc import Sequence
from typing import Literal

from digest_mail.errors import DigestMailError
from digest_mail.transport.errors import SMTPUTF8_MISSING, STARTTLS_FOR_AUTH_HINT
from digest_mail.transport.wire import ascii_envelope, prepare_data

TlsMode = Literal["none", "starttls", "implicit"]

_MAX_REPLY_BYTES = 64 * 1024


# --- errors ------------------------------------------------------------------------


class SmtpError(DigestMailError):
    """Base of SMTP failures: ``code`` (None when there was no reply), ``reply`` text,
    and the ``recipient`` it concerns (None when it concerns the whole transaction)."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        reply: str = "",
        recipient: str | None = None,
        stage: str = "",
        hint: str | None = None,
        about: str = "unknown",
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.reply = reply
        self.recipient = recipient
        # For a refusal of our own making (no reply): whose problem it is, as in
        # digest_mail.transport.errors.PermanentFailure ("ours": a gap of this relay).
        self.about = about
        # Which step failed: connect, sender, recipient, data (the DATA command) or
        # message (the reply after the body); "" for errors outside a transaction.
        self.stage = stage

    @property
    def temporary(self) -> bool:
        """Worth retrying later: a 4xx reply or no reply at all."""
        return self.code is None or 400 <= self.code < 500


class SmtpReplyError(SmtpError):
    """The server answered with a refusal."""


class SmtpTemporaryError(SmtpReplyError):
    """A 4xx reply: try again later."""


class SmtpPermanentError(SmtpReplyError):
    """A 5xx reply: final for this recipient or transaction."""

    @property
    def temporary(self) -> bool:
        return False


class SmtpRecipientsRefused(SmtpReplyError):
    """Every recipient of a transaction was refused; ``errors`` has one per address."""

    def __init__(self, errors: dict[str, SmtpReplyError]) -> None:
        first = next(iter(errors.values()))
        super().__init__(
            f"all {len(errors)} recipients refused, first: {first}",
            code=first.code,
            reply=first.reply,
        )
        self.errors = errors

    @property
    def temporary(self) -> bool:
        return all(error.temporary for error in self.errors.values())


class SmtpConnectionLost(SmtpError, ConnectionError):
    """The connection closed or failed before the server answered; the message may or
    may not have been accepted if this happened after the body was sent."""


class SmtpTimeout(SmtpConnectionLost, TimeoutError):
    """The server did not answer within the timeout; the connection is closed."""


class SmtpTlsError(SmtpError):
    """TLS could not be set up (not offered, or the certificate does not verify)."""

    @property
    def temporary(self) -> bool:
        return False


class SmtpAuthError(SmtpError):
    """The server refused our credentials, or offers no mechanism we can use safely."""

    @property
    def temporary(self) -> bool:
        return False


def reply_error(
    code: int, reply: str, *, what: str, stage: str, recipient: str | None = None
) -> SmtpReplyError:
    """The typed error for a refusal: 4xx temporary, anything else permanent."""
    cls: type[SmtpReplyError] = SmtpTemporaryError if 400 <= code < 500 else SmtpPermanentError
    subject = f"{recipient}: " if recipient else ""
    return cls(
        f"{subject}{what} refused: {code} {reply}",
        code=code,
        reply=reply,
        recipient=recipient,
        stage=stage,
    )


# --- the wire ------------------------------------------------------------------------


class Reply(typing.NamedTuple):
    """One SMTP reply. A tuple: four are made a message, and a frozen dataclass costs
    several times as much to build."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400


class _ReplyReader(asyncio.Protocol):
    """Splits the byte stream into SMTP replies and wakes whoever waits for N of them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.replies: deque[Reply] = deque()
        self.lost: BaseException | None = None
        self._buffer = bytearray()
        self._lines: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._wanted = 0
        # wait_for(body=…): the message to write as soon as its envelope is accepted.
        self._body: bytes | None = None
        # Whether the current message's body and final dot were handed to the socket.
        self.body_written = False
        self._timer: asyncio.TimerHandle | None = None
        self._timeout = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the interface without subclassing asyncio.Transport.
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._buffer and not self._lines and data.endswith(b"\r\n"):
            # The usual case: whole one-line replies. No buffer, one split.
            for line in data[:-2].split(b"\r\n"):
                if (len(line) > 3 and line[3] == 0x2D) or b"\n" in line:
                    break  # a continuation line, or a bare LF: the general path below
            else:
                for line in data[:-2].split(b"\r\n"):
                    head = line[:3]
                    if not head.isdigit():
                        self._lines.append(line)
                        self._finish_reply()
                        return
                    self.replies.append(Reply(int(head), line[4:].decode("utf-8", "replace")))
                self._wake()
                return
        buffer = self._buffer
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            self._lines.append(line)
            if len(line) < 4 or line[3] != 0x2D:  # '-' marks a continuation line
                self._finish_reply()
                if self.lost is not None:
                    return
        if start:
            del buffer[:start]
        if len(buffer) > _MAX_REPLY_BYTES:
            self._fail(SmtpConnectionLost("the server sent an endless line"))
            return
        self._wake()

    def pending(self) -> bool:
        """Whether anything the server sent is waiting unread (replies or a part line)."""
        return bool(self.replies or self._lines or self._buffer)

    def _wake(self) -> None:
        if self._body is not None and len(self.replies) >= self._wanted:
            self._envelope_answered()
        waiter = self._waiter
        if waiter is not None and len(self.replies) >= self._wanted and not waiter.done():
            waiter.set_result(None)

    def _envelope_answered(self) -> None:
        """The replies to MAIL, RCPT … and DATA are in: if they all accept, the body goes
        out now, from this callback, and the wait goes on for the reply to it."""
        body, self._body = self._body, None
        assert body is not None and self.transport is not None
        replies = self.replies
        wanted = self._wanted
        if replies[0].code != 250 or replies[wanted - 1].code != 354:
            return
        for index in range(1, wanted - 1):
            if replies[index].code not in (250, 251):
                return
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # the wait already ended (a timeout): the message is not sent now
        self.body_written = True
        self.transport.write(body + b".\r\n")
        self._wanted = wanted + 1
        if self._timer is not None:
            # The reply to the body gets a timeout of its own, as a separate wait would.
            self._timer.cancel()
            self._timer = self.loop.call_later(self._timeout, _time_out, waiter, self._timeout)

    def _finish_reply(self) -> None:
        lines, self._lines = self._lines, []
        head = lines[0][:3]
        if not head.isdigit():
            self._fail(
                SmtpConnectionLost(f"the server sent something that is not SMTP: {lines[0][:80]!r}")
            )
            return
        text = b"\n".join(line[4:] for line in lines).decode("utf-8", "replace")
        self.replies.append(Reply(int(head), text))

    def _fail(self, exc: BaseException) -> None:
        if self.lost is None:
            self.lost = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self.lost)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        detail = f": {exc}" if exc else ""
        self._fail(SmtpConnectionLost(f"the server closed the connection{detail}"))

    def eof_received(self) -> bool | None:
        return False

    async def wait_for(
        self, count: int, timeout: float, *, body: bytes | None = None
    ) -> list[Reply]:
        """The next ``count`` replies, waiting at most ``timeout`` seconds.

        With ``body``, they are the replies to a pipelined envelope ending with DATA:
        when they all accept it, the read callback writes ``body`` (DATA form, without
        the final dot) at once and the wait goes on for the reply to it, so ``count + 1``
        replies come back. One wake-up a message instead of two, and no loop iteration
        between the 354 and the body."""
        self._wanted = count
        if len(self.replies) < count:
            if self.lost is not None:
                raise self.lost
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._waiter = waiter
            self._body = body
            self._timeout = timeout
            self._timer = self.loop.call_later(timeout, _time_out, waiter, timeout)
            try:
                await waiter
            finally:
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = None
                self._waiter = None
                self._body = None
        replies = self.replies
        return [replies.popleft() for _ in range(self._wanted)]


def _time_out(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(SmtpTimeout(f"no reply from the server within {timeout:g} s"))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_NOT_IN_A_PATH = re.compile("[\r\n<>]")


def _address(address: str) -> bytes:
    if _NOT_IN_A_PATH.search(address):
        raise SmtpPermanentError(f"{address!r} is not an address that can go into an SMTP command")
    return address.encode("utf-8")


class SmtpConnection:
    """One SMTP session. Open with :meth:`open`; send many messages; :meth:`quit`."""

    def __init__(
        self,
        reader: _ReplyReader,
        *,
        host: str,
        timeout: float,
        tls: bool,
        allow_pipelining: bool,
    ) -> None:
        self._reader = reader
        self.host = host
        self.timeout = timeout
        self.tls = tls
        self.allow_pipelining = allow_pipelining
        self.extensions: dict[str, str] = {}
        self.esmtp = False
        self.messages_sent = 0

    # -- opening ---------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        tls: TlsMode = "none",
        ssl_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        allow_pipelining: bool = True,
    ) -> SmtpConnection:
        """Connect, read the greeting, EHLO, STARTTLS (re-EHLO), AUTH.

        ``ssl_context`` defaults to :func:`ssl.create_default_context` (certificates
        verified). Credentials are only sent over TLS or to a loopback address.
        """
        loop = asyncio.get_running_loop()
        context = ssl_context
        if tls != "none" and context is None:
            context = ssl.create_default_context()
        server_hostname = host.strip("[]") if tls != "none" else None
        try:
            _transport, reader = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _ReplyReader(loop),
                    host.strip("[]"),
                    port,
                    ssl=context if tls == "implicit" else None,
                    server_hostname=server_hostname if tls == "implicit" else None,
                ),
                timeout,
            )
        except ssl.SSLError as exc:
            raise SmtpTlsError(
                f"{host}:{port}: TLS failed: {exc}",
                hint="check the relay's certificate and [smtp] url",
            ) from None
        except TimeoutError:
            raise SmtpTimeout(f"{host}:{port}: no connection within {timeout:g} s") from None
        except OSError as exc:
            raise SmtpConnectionLost(
                f"{host}:{port}: cannot connect: {exc.strerror or exc}"
            ) from None
        connection = cls(
            reader,
            host=host,
            timeout=timeout,
            tls=tls == "implicit",
            allow_pipelining=allow_pipelining,
        )
        try:
            await connection._start(
                port=port,
                tls=tls,
                context=context,
                server_hostname=server_hostname,
                username=username,
                password=password,
                local_hostname=local_hostname,
            )
        except BaseException:
            connection.abort()
            raise
        return connection

    async def _start(
        self,
        *,
        port: int,
        tls: TlsMode,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
        username: str | None,
        password: str | None,
        local_hostname: str | None,
    ) -> None:
        greeting = (await self._reader.wait_for(1, self.timeout))[0]
        if greeting.code != 220:
            raise reply_error(
                greeting.code,
                greeting.text,
                what=f"{self.host}:{port}: the connection",
                stage="connect",
            )
        name = local_hostname or self._own_address_literal()
        await self._ehlo(name)
        if tls == "starttls":
            if "STARTTLS" not in self.extensions:
                raise SmtpTlsError(
                    f"{self.host}:{port} does not offer STARTTLS",
                    hint="use smtps:// for implicit TLS, or a relay that offers STARTTLS",
                )
            reply = await self.command(b"STARTTLS")
            if reply.code != 220:
                raise SmtpTlsError(
                    f"{self.host}:{port}: STARTTLS refused: {reply.code} {reply.text}"
                )
            # RFC 3207 4.2: nothing may follow the 220 until TLS is up. Bytes already here
            # are plaintext anyone on the path could have added ("250 AUTH LOGIN" read as
            # the EHLO reply after TLS): refuse the relay rather than guess.
            self._refuse_plaintext_after_starttls(port)
            assert context is not None
            loop = asyncio.get_running_loop()
            transport = self._reader.transport
            assert transport is not None
            try:
                new_transport = await asyncio.wait_for(
                    loop.start_tls(
                        transport, self._reader, context, server_hostname=server_hostname
                    ),
                    self.timeout,
                )
            except (ssl.SSLError, ssl.CertificateError) as exc:
                raise SmtpTlsError(
                    f"{self.host}:{port}: TLS failed: {exc}",
                    hint="check the relay's certificate and [smtp] url",
                ) from None
            except TimeoutError:
                raise SmtpTimeout(f"{self.host}:{port}: TLS handshake timed out") from None
            # Plaintext that arrived before the handshake took the socket over is queued
            # too: check again before the first command inside TLS.
            self._refuse_plaintext_after_starttls(port)
            self._reader.transport = typing.cast(asyncio.Transport, new_transport)
            self.tls = True
            await self._ehlo(name)
        if username:
            await self._login(username, password or "", port=port)

    def _refuse_plaintext_after_starttls(self, port: int) -> None:
        if self._reader.pending():
            raise SmtpTlsError(
                f"{self.host}:{port}: the relay sent data after its 220 reply to STARTTLS, "
                "before TLS (a STARTTLS response injection); not continuing",
                hint="something between digest-mail and the relay is tampering with the "
                "connection, or the relay is broken",
            )

    def _own_address_literal(self) -> str:
        transport = self._reader.transport
        sockname = transport.get_extra_info("sockname") if transport else None
        if not sockname:
            return "localhost"
        address = ipaddress.ip_address(sockname[0])
        return f"[IPv6:{address}]" if address.version == 6 else f"[{address}]"

    async def _ehlo(self, name: str) -> None:
        reply = await self.command(b"EHLO " + name.encode("ascii"))
        if reply.code == 250:
            self.esmtp = True
            self.extensions = {}
            for line in reply.text.split("\n")[1:]:
                keyword, _, params = line.strip().partition(" ")
                self.extensions[keyword.upper()] = params
            return
        reply = await self.command(b"HELO " + name.encode("ascii"))
        if reply.code != 250:
            raise reply_error(reply.code, reply.text, what="HELO", stage="connect")
        self.esmtp = False
        self.extensions = {}

    async def _login(self, username: str, password: str, *, port: int) -> None:
        if not self.tls and not _is_loopback(self.host):
            raise SmtpAuthError(
                f"{self.host}:{port}: refusing to send the password over an unencrypted connection",
                hint="use smtps:// (port 465) or STARTTLS (port 587)",
            )
        mechanisms = set(self.extensions.get("AUTH", "").upper().split())
        if "PLAIN" in mechanisms:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode("ascii")
            reply = await self.command(f"AUTH PLAIN {token}".encode("ascii"))
        elif "LOGIN" in mechanisms:
            reply = await self.command(b"AUTH LOGIN")
            if reply.code == 334:
                reply = await self.command(base64.b64encode(username.encode()))
            if reply.code == 334:
                reply = await self.command(base64.b64encode(password.encode()))
        else:
            offered = " ".join(sorted(mechanisms)) or "none"
            hint = None
            if not self.tls and "STARTTLS" in self.extensions:
                hint = STARTTLS_FOR_AUTH_HINT
            raise SmtpAuthError(
                f"{self.host}:{port} offers no AUTH PLAIN or LOGIN (offers: {offered})",
                hint=hint,
            )
        if reply.code != 235:
            raise SmtpAuthError(
                f"{self.host}:{port}: login as {username!r} refused: {reply.code} {reply.text}",
                code=reply.code,
                reply=reply.text,
                hint="check the user in [smtp] url and DIGEST_MAIL_SMTP_PASSWORD",
            )

    # -- state -------------------------------------------------------------------------

    @property
    def pipelining(self) -> bool:
        return self.allow_pipelining and "PIPELINING" in self.extensions

    @property
    def is_connected(self) -> bool:
        return self._reader.lost is None and self._reader.transport is not None

    async def command(self, line: bytes) -> Reply:
        """Send one command line and return its reply."""
        self._write(line + b"\r\n")
        return (await self._reader.wait_for(1, self.timeout))[0]

    def _write(self, data: bytes) -> None:
        reader = self._reader
        if reader.lost is not None:
            raise reader.lost
        assert reader.transport is not None
        reader.transport.write(data)

    async def _replies(self, count: int, *, body: bytes | None = None) -> list[Reply]:
        try:
            return await self._reader.wait_for(count, self.timeout, body=body)
        except SmtpConnectionLost:
            self.abort()
            raise

    # -- sending -----------------------------------------------------------------------

    async def send(
        self,
        envelope_from: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        prepared: bool = False,
    ) -> dict[str, SmtpReplyError]:
        """Send one message to ``recipients``; return the refused ones (empty: all
        accepted). ``data`` is the raw message, or already :func:`prepare_data`'d bytes
        when ``prepared``.

        Raises :class:`SmtpRecipientsRefused` (or, for one recipient, that recipient's
        :class:`SmtpReplyError`) when nobody was accepted, an :class:`SmtpReplyError`
        without a recipient when the server refused the sender or the message, and
        :class:`SmtpConnectionLost` when the connection broke (its ``stage`` is
        ``message`` once the body and its final dot were written); after that the
        connection is closed and must not be used again.
        """
        self._reader.body_written = False
        try:
            return await self._send(envelope_from, recipients, data, prepared=prepared)
        except SmtpConnectionLost as exc:
            if self._reader.body_written:
                # Any byte of the final dot may have reached the server: whether it
                # queued the message, only its lost reply could have said.
                exc.stage = "message"
            raise

    async def _send(
        self,
        envelope_from: str,
        recipients: Sequence[str],
        data: bytes,
        *,
        prepared: bool,
    ) -> dict[str, SmtpReplyError]:
        if not recipients:
            raise ValueError("a message needs at least one recipient")
        body = data if prepared else prepare_data(data)
        parameters = self._mail_parameters(body)
        # Only a non-ASCII local part needs SMTPUTF8; an IDN domain goes as its A-label.
        envelope_from, recipients = ascii_envelope(envelope_from, recipients)
        if not envelope_from.isascii() or not all(r.isascii() for r in recipients):
            if "SMTPUTF8" not in self.extensions:
                # Not a reply of the relay: no code, so nobody mistakes it for a bounce.
                raise SmtpPermanentError(
                    SMTPUTF8_MISSING,
                    recipient=recipients[0] if len(recipients) == 1 else None,
                    stage="recipient",
                    about="ours",
                )
            parameters += b" SMTPUTF8"
        mail = b"MAIL FROM:<" + _address(envelope_from) + b">" + parameters
        rcpts = [b"RCPT TO:<" + _address(recipient) + b">" for recipient in recipients]
        if self.pipelining:
            self._write(b"\r\n".join([mail, *rcpts, b"DATA", b""]))
            # The usual message in one wait: all accepted, the read callback writes the
            # body on the 354, and the reply to the body ends the wait.
            replies = await self._replies(len(rcpts) + 2, body=body)
            if len(replies) == len(rcpts) + 3:
                final = replies[-1]
                if final.code != 250:
                    raise reply_error(final.code, final.text, what="the message", stage="message")
                self.messages_sent += 1
                return {}
            mail_reply, rcpt_replies, data_reply = replies[0], replies[1:-1], replies[-1]
        else:
            self._write(mail + b"\r\n")
            mail_reply = (await self._replies(1))[0]
            if mail_reply.code != 250:
                await self._reset()
                raise reply_error(
                    mail_reply.code,
                    mail_reply.text,
                    what=f"sender <{envelope_from}>",
                    stage="sender",
                )
            rcpt_replies = []
            for rcpt in rcpts:
                self._write(rcpt + b"\r\n")
                rcpt_replies.append((await self._replies(1))[0])
            data_reply = Reply(0, "")
            if any(reply.code in (250, 251) for reply in rcpt_replies):
                self._write(b"DATA\r\n")
                data_reply = (await self._replies(1))[0]

        refused: dict[str, SmtpReplyError] = {}
        if mail_reply.code == 250:
            for recipient, reply in zip(recipients, rcpt_replies, strict=True):
                if reply.code not in (250, 251):
                    refused[recipient] = reply_error(
                        reply.code,
                        reply.text,
                        what="recipient",
                        stage="recipient",
                        recipient=recipient,
                    )
        if data_reply.code == 354 and (mail_reply.code != 250 or len(refused) == len(recipients)):
            # A server that said 354 with nobody to deliver to gets an empty message
            # (RFC 2920 3.1): the transaction must end before we can reset it.
            self._write(b".\r\n")
            await self._replies(1)
            data_reply = Reply(0, "")
        if mail_reply.code != 250:
            await self._reset()
            raise reply_error(
                mail_reply.code, mail_reply.text, what=f"sender <{envelope_from}>", stage="sender"
            )
        if len(refused) == len(recipients):
            await self._reset()
            if len(refused) == 1:
                raise next(iter(refused.values()))
            raise SmtpRecipientsRefused(refused)
        if data_reply.code != 354:
            await self._reset()
            raise reply_error(data_reply.code, data_reply.text, what="DATA", stage="data")
        self._reader.body_written = True
        self._write(body + b".\r\n")
        final = (await self._replies(1))[0]
        if final.code != 250:
            raise reply_error(final.code, final.text, what="the message", stage="message")
        self.messages_sent += 1
        return refused

    def _mail_parameters(self, body: bytes) -> bytes:
        extensions = self.extensions
        if not extensions:
            return b""
        parameters = b""
        if "SIZE" in extensions:
            limit = extensions["SIZE"]
            if limit.isdigit() and int(limit) and len(body) > int(limit):
                raise SmtpPermanentError(
                    f"the message is {len(body)} bytes, more than the server's limit of {limit}",
                    code=552,
                )
            parameters += b" SIZE=%d" % len(body)
        if "8BITMIME" in extensions and not body.isascii():
            parameters += b" BODY=8BITMIME"
        return parameters

    async def _reset(self) -> None:
        reply = await self.command(b"RSET")
        if reply.code != 250:
            self.abort()
            raise SmtpConnectionLost(f"RSET refused: {reply.code} {reply.text}", code=reply.code)

    # -- closing -----------------------------------------------------------------------

    async def quit(self) -> None:
        """Say goodbye politely; never raises."""
        if self.is_connected:
            try:
                self._write(b"QUIT\r\n")
                await self._reader.wait_for(1, min(self.timeout, 5.0))
            except (SmtpError, OSError):
                pass
        self.close()

    def close(self) -> None:
        transport = self._reader.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def abort(self) -> None:
        transport = self._reader.transport
        if transport is not None:
            transport.abort()
