"""Signed unsubscribe tokens, and the links that carry them.

A token names a list and an address and proves that we issued it:
``base64url(list NUL address) "." base64url(HMAC-SHA256(key, list NUL address))``.
Nobody can unsubscribe someone else by editing a link, and the endpoint needs no
database of issued links. A test mail's token ends its payload with ``NUL "test"``,
under the same signature: its links show a page saying so and change nothing, so an
editor checking the link of a test is never unsubscribed (and a real token cannot be
turned into a test one, or back, without the key).

The key comes from ``DIGEST_MAIL_SECRET``, else the owner-only file named by
``[unsubscribe] key_file``, else ``var/unsubscribe.key``, created with 32 random bytes
on first use so that a fresh workspace works out of the box.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from digest_mail.config import Settings, Workspace, read_secret
from digest_mail.errors import ConfigError, DigestMailError

__all__ = [
    "Token",
    "TokenError",
    "TokenSigner",
    "make_token",
    "read_token",
    "signing_key",
    "unsubscribe_mailto",
    "unsubscribe_url",
    "verify_token",
]

SECRET_VARIABLE = "DIGEST_MAIL_SECRET"
KEY_FILE_NAME = "unsubscribe.key"
MIN_SECRET_LENGTH = 16
_MAC_LENGTH = 32
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_TEST = b"\0test"


class TokenError(DigestMailError):
    """An unsubscribe token that is malformed, truncated or not signed by our key."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise TokenError("the unsubscribe link is damaged (not base64url)")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("the unsubscribe link is damaged (truncated)") from None


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()


def make_token(key: bytes, list_name: str, address: str, *, test: bool = False) -> str:
    """The token for ``address`` on ``list_name``, signed with ``key``; ``test`` for the
    links of a test send."""
    if "\0" in list_name or "\0" in address:
        raise TokenError("a list name or address cannot contain NUL")
    payload = f"{list_name}\0{address}".encode() + (_TEST if test else b"")
    return f"{_b64encode(payload)}.{_b64encode(_mac(key, payload))}"


class TokenSigner:
    """:func:`make_token` for one key and one list, for a send that signs a token per
    recipient: the keyed HMAC state and the list's prefix are prepared once, and each
    token copies that state (about half the cost of a fresh HMAC)."""

    def __init__(self, key: bytes, list_name: str, *, test: bool = False) -> None:
        if "\0" in list_name:
            raise TokenError("a list name or address cannot contain NUL")
        self._prefix = f"{list_name}\0".encode()
        self._suffix = _TEST if test else b""
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, address: str) -> str:
        if "\0" in address:
            raise TokenError("a list name or address cannot contain NUL")
        payload = self._prefix + address.encode() + self._suffix
        mac = self._keyed.copy()
        mac.update(payload)
        return f"{_b64encode(payload)}.{_b64encode(mac.digest())}"


@dataclass(frozen=True)
class Token:
    """What a verified token says: the list, the address, and whether a test mail
    carried it (then following it must change nothing)."""

    list_name: str
    address: str
    test: bool = False


def verify_token(key: bytes, token: str) -> tuple[str, str]:
    """(list name, address) of a token we signed for a real send; :class:`TokenError`
    for anything else, a test mail's token included (see :func:`read_token`)."""
    found = read_token(key, token)
    if found.test:
        raise TokenError("the link is from a test mail: it unsubscribes nobody")
    return found.list_name, found.address


def read_token(key: bytes, token: str) -> Token:
    """The :class:`Token` we signed; :class:`TokenError` for anything else."""
    body, dot, signature = token.strip().partition(".")
    if not dot or not body or not signature:
        raise TokenError("the unsubscribe link is incomplete")
    payload = _b64decode(body)
    mac = _b64decode(signature)
    # compare_digest takes the same time wherever the first difference is.
    # The decoder ignores the unused low bits of the last character; accept only the one
    # spelling we issue, or three other spellings of every token would verify too.
    canonical = _b64encode(payload) == body and _b64encode(mac) == signature
    if len(mac) != _MAC_LENGTH or not hmac.compare_digest(mac, _mac(key, payload)) or not canonical:
        raise TokenError("the unsubscribe link is not valid (bad signature)")
    test = payload.endswith(_TEST) and payload.count(b"\0") == 2
    if test:
        payload = payload[: -len(_TEST)]
    try:
        list_name, address = payload.decode("utf-8").split("\0")
    except (UnicodeDecodeError, ValueError):
        raise TokenError("the unsubscribe link is not valid") from None
    return Token(list_name, address, test)


def signing_key(workspace: Workspace) -> bytes:
    """The HMAC key: ``DIGEST_MAIL_SECRET``, the configured key file, or var/unsubscribe.key."""
    configured = workspace.settings.unsubscribe.key_file
    if configured:
        path = Path(configured).expanduser()
        if not path.is_absolute():
            path = workspace.root / path
        secret = read_secret(variable=SECRET_VARIABLE, file=path, what="unsubscribe key")
    else:
        secret = read_secret(variable=SECRET_VARIABLE, file=None, what="unsubscribe key")
        if secret is None:
            secret = _workspace_key(workspace.var_dir / KEY_FILE_NAME)
    assert secret is not None
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"the unsubscribe key is too short ({len(secret)} characters)",
            hint=f"use at least {MIN_SECRET_LENGTH} random characters, e.g. 'openssl rand -hex 32'",
        )
    return secret.encode("utf-8")


def _workspace_key(path: Path) -> str:
    """Read var/unsubscribe.key, creating it (mode 0600) when it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with open(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32) + "\n")
                out.flush()
                os.fsync(out.fileno())
            # link() fails if another process created the key meanwhile: theirs wins.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    secret = read_secret(variable=SECRET_VARIABLE, file=path, what="unsubscribe key")
    if not secret:
        raise ConfigError(f"unsubscribe key file {path} is empty", hint=f"delete {path}")
    return secret


def unsubscribe_url(settings: Settings, token: str) -> str:
    """The https link of List-Unsubscribe and of the footer: ``base_url?t=TOKEN``."""
    base = settings.unsubscribe.base_url
    return f"{base}{'&' if '?' in base else '?'}t={token}"


def unsubscribe_mailto(settings: Settings, token: str) -> str:
    """The mailto: alternative of List-Unsubscribe, the token in the subject."""
    return f"mailto:{quote(settings.unsubscribe.mailto, safe='@')}?subject=unsubscribe%20{token}"
