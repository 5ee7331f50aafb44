"""Relays: ``[smtp] url`` parsed into :class:`RelayConfig`, and the TLS rule.

Plain SMTP is allowed only to a loopback relay (a local Postfix, ``dev-smtp``); anything
else is reached over STARTTLS or implicit TLS, so a login never crosses the network in
clear. Several URLs (comma or space separated) make several relays, weighted by
``?weight=N``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from digest_mail.config import mask_url
from digest_mail.errors import ConfigError

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


def split_relay_urls(value: str) -> list[str]:
    """The relay URLs in ``[smtp] url``: separated by commas or spaces."""
    return [u.strip() for u in value.replace(",", " ").split() if u.strip()]
