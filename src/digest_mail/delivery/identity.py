"""Whom the mail claims to come from, and whether it would leave this machine.

A new workspace starts with the sample identity (``digest@example.jp``, unsubscribe
links and List-Id under example.jp). That is right for the capture outbox and a loopback
relay such as ``dev-smtp``; through a real relay it would reach readers as mail from a
domain nobody owns, with unsubscribe links that go nowhere. Reserved example names
(RFC 2606, RFC 6761 and JPRS's example.jp) are the rule, not one sample domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import urlsplit

from digest_mail.config import Settings, Workspace
from digest_mail.errors import ConfigError

__all__ = [
    "SampleSetting",
    "is_reserved_domain",
    "real_relays",
    "refuse_sample_identity",
    "sample_identity",
]

# RFC 2606 / RFC 6761 top-level names that never resolve to anyone's mail.
_RESERVED_TLDS = {"example", "test", "invalid", "localhost"}
# RFC 2606 second-level names, and the .jp registry's reserved example names.
_RESERVED_SLDS = {"example.com", "example.net", "example.org", "example.jp"}
_JP_KINDS = {"ac", "ad", "co", "ed", "go", "gr", "lg", "ne", "or"}


def is_reserved_domain(domain: str) -> bool:
    """True for example.jp, example.co.jp, example.com/.net/.org, *.example, *.test …
    and any name under them."""
    labels = [label for label in domain.lower().strip().rstrip(".").split(".") if label]
    if not labels:
        return False
    if labels[-1] in _RESERVED_TLDS:
        return True
    if ".".join(labels[-2:]) in _RESERVED_SLDS:
        return True
    return (
        len(labels) >= 3
        and labels[-1] == "jp"
        and labels[-2] in _JP_KINDS
        and (labels[-3] == "example")
    )


@dataclass(frozen=True)
class SampleSetting:
    """A setting still on a reserved example domain: ``newsletter.from`` and its value."""

    key: str
    value: str


def _domain_of(key: str, value: str) -> str:
    if key.endswith("base_url") or key.endswith("site_url"):
        return urlsplit(value.strip()).hostname or ""
    if key == "newsletter.list_id":
        return value.strip().strip("<>")
    return parseaddr(value)[1].rpartition("@")[2]


def sample_identity(settings: Settings) -> list[SampleSetting]:
    """The identity settings a reader sees that are still on a reserved example domain."""
    candidates = [
        ("newsletter.from", settings.newsletter.sender),
        ("newsletter.reply_to", settings.newsletter.reply_to),
        ("newsletter.list_id", settings.newsletter.list_id),
        ("unsubscribe.base_url", settings.unsubscribe.base_url),
        ("unsubscribe.mailto", settings.unsubscribe.mailto),
    ]
    return [
        SampleSetting(key, value)
        for key, value in candidates
        if value.strip() and is_reserved_domain(_domain_of(key, value))
    ]


def real_relays(settings: Settings) -> list[str]:
    """The relays of ``[smtp] url`` beyond this machine (shown as URLs, no password).

    Empty for the capture outbox and loopback relays (dev-smtp, a local Postfix).
    """
    from digest_mail.transport.relay import is_loopback, parse_relay_url

    url = settings.smtp.url.strip()
    if url in {"", "capture"}:
        return []
    relays = [
        parse_relay_url(u, username=settings.smtp.username) for u in url.replace(",", " ").split()
    ]
    return [r.display for r in relays if not is_loopback(r.host)]


def refuse_sample_identity(workspace: Workspace) -> None:
    """Raise before anything is sent through a real relay as a reserved example domain."""
    relays = real_relays(workspace.settings)
    samples = sample_identity(workspace.settings)
    if not relays or not samples:
        return
    keys = ", ".join(s.key for s in samples)
    where = workspace.config_path or "digest-mail.toml"
    raise ConfigError(
        f"refusing to send through {relays[0]} as a reserved example domain:"
        f" {keys} in {where} still carry the sample identity",
        hint=f"set {keys} to addresses and URLs of your own domain",
    )
