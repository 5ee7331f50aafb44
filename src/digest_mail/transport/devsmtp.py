"""``dev-smtp``: a local SMTP server that keeps what it receives in a Maildir.

It lets the real SMTP path (``[smtp] url = "smtp://127.0.0.1:1025"``) be tried without a
relay: nothing is forwarded anywhere. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from digest_mail.errors import DigestMailError
from digest_mail.transport.capture import MaildirWriter
from digest_mail.transport.relay import is_loopback


class _Capture:
    def __init__(
        self, writer: MaildirWriter, on_message: Callable[[str, list[str], int], None] | None
    ) -> None:
        self.writer = writer
        self.on_message = on_message

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        recipients = list(envelope.rcpt_tos)
        self.writer.deliver(str(envelope.mail_from), recipients, data)
        if self.on_message is not None:
            self.on_message(str(envelope.mail_from), recipients, len(data))
        return "250 2.0.0 captured"


async def serve_capture(
    directory: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 1025,
    on_start: Callable[[int], None] | None = None,
    on_message: Callable[[str, list[str], int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM)."""
    if not is_loopback(host):
        raise DigestMailError(f"dev-smtp listens on loopback only, not {host!r}")
    writer = MaildirWriter(directory)
    handler = _Capture(writer, on_message)
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(
            lambda: SMTP(handler, hostname="dev-smtp.localhost", ident="digest-mail dev-smtp"),
            host,
            port,
        )
    except OSError as exc:
        writer.close()
        raise DigestMailError(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="choose another --port"
        ) from None
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if on_start is not None:
            on_start(server.sockets[0].getsockname()[1])
        await stop.wait()
    finally:
        server.close()
        await server.wait_closed()
        writer.close()
