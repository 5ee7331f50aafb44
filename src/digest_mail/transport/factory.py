"""The transport ``[smtp]`` names, opened: capture, one relay's pool, or several relays.

:func:`open_transport` is where the settings meet the transport package: the relay URLs,
the client (``[smtp] client`` picks the connection class the pool opens), the password,
the TLS context (``ca_file``, ``insecure_skip_verify``) and each relay's share of the
connections and of the rate. :func:`describe_transport` says where mail would go without
opening anything.
"""

from __future__ import annotations

import ssl
import sys

from digest_mail.config import Workspace, read_secret
from digest_mail.errors import ConfigError
from digest_mail.transport.aiosmtp import AiosmtpConnection
from digest_mail.transport.capture import CaptureTransport
from digest_mail.transport.pipelining import PipeliningConnection
from digest_mail.transport.pool import ConnectionKind, SmtpTransport, WeightedTransport
from digest_mail.transport.ratelimit import Clock, RateLimiter
from digest_mail.transport.relay import parse_relay_url, split_relay_urls


def describe_transport(workspace: Workspace) -> str:
    """Where mail would go, for prompts and --dry-run (opens nothing)."""
    url = workspace.settings.smtp.url.strip()
    if url in {"", "capture"}:
        return f"capture to {workspace.outbox_dir} (nothing leaves this machine)"
    relays = [
        parse_relay_url(u, username=workspace.settings.smtp.username) for u in split_relay_urls(url)
    ]
    return ", ".join(f"SMTP relay {r.display}" for r in relays)


def connection_kind(client: str) -> ConnectionKind:
    """``[smtp] client``: the pipelining client (default) or aiosmtplib."""
    if client == "aiosmtplib":
        return AiosmtpConnection
    if client == "pipelining":
        return PipeliningConnection
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
    relays = [parse_relay_url(u, username=smtp.username) for u in split_relay_urls(url)]
    connection = connection_kind(smtp.client)
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
            SmtpTransport(
                relay,
                connection=connection,
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
