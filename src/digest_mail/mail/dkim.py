"""Optional DKIM signing (dkimpy) of the exact bytes that are sent.

Enabled when ``[dkim] domain`` and ``selector`` are set; the private key (PEM) comes from
``DIGEST_MAIL_DKIM_KEY`` or the owner-only file ``[dkim] key_file``. The signature covers
both unsubscribe headers (RFC 8058 asks for List-Unsubscribe and List-Unsubscribe-Post
in ``h=``), so a forwarder cannot strip or change the one-click link unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from digest_mail.config import Workspace, read_secret
from digest_mail.errors import ConfigError

KEY_VARIABLE = "DIGEST_MAIL_DKIM_KEY"

SIGNED_HEADERS = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
    b"MIME-Version",
    b"Content-Type",
)


class DkimSigner:
    """Signs message bytes; ``sign(data)`` returns the DKIM-Signature line + ``data``."""

    def __init__(self, *, domain: str, selector: str, private_key: bytes) -> None:
        self.domain = domain.encode("ascii")
        self.selector = selector.encode("ascii")
        self.private_key = private_key
        algorithm = b"ed25519-sha256" if b"BEGIN" not in private_key else b"rsa-sha256"
        self.algorithm = algorithm

    def sign(self, data: bytes) -> bytes:
        # dkimpy loads dnspython: a tenth of a second at every send's start, so only a
        # send that signs pays for it.
        import dkim as dkimpy

        headers = [h for h in SIGNED_HEADERS if _has_header(data, h)]
        try:
            signature = dkimpy.sign(
                data,
                self.selector,
                self.domain,
                self.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=self.algorithm,
                include_headers=headers,
            )
        except dkimpy.DKIMException as exc:
            raise ConfigError(f"DKIM signing failed: {exc}", key="dkim") from None
        return bytes(signature) + data

    __call__ = sign


def _has_header(data: bytes, name: bytes) -> bool:
    head = data.split(b"\r\n\r\n", 1)[0]
    return (
        head.lower().startswith(name.lower() + b":")
        or (b"\r\n" + name.lower() + b":") in head.lower()
    )


def load_signer(workspace: Workspace) -> Callable[[bytes], bytes] | None:
    """The signer ``[dkim]`` describes, or None when DKIM is not configured."""
    settings = workspace.settings.dkim
    if not settings.domain and not settings.selector:
        return None
    if not settings.domain or not settings.selector:
        raise ConfigError(
            "set both domain and selector to sign with DKIM (or neither)",
            path=workspace.config_path,
            key="dkim",
        )
    key_file: str | Path = settings.key_file
    if key_file and not Path(key_file).expanduser().is_absolute():
        key_file = workspace.root / key_file
    key = read_secret(variable=KEY_VARIABLE, file=key_file or None, what="DKIM key")
    if not key:
        raise ConfigError(
            "no DKIM private key",
            key="dkim.key_file",
            hint=f"set [dkim] key_file to an owner-only PEM file, or {KEY_VARIABLE}",
        )
    return DkimSigner(
        domain=settings.domain, selector=settings.selector, private_key=key.encode("ascii")
    ).sign
