"""Message bytes and addresses in the form SMTP carries them: a leaf, imported by the
message builder and both SMTP connections.

The builder (``digest_mail.mail.message``) promises what it makes with the marker types
:class:`CrlfBytes` and :class:`DotStuffedBytes`; :func:`prepare_data` trusts the markers
and skips its scans, which is where a send's per-message cost went. Why a leaf: the
message builder must not load the SMTP client to name these types (issue 17), and the
client must not load the builder.
"""

from __future__ import annotations

from collections.abc import Sequence

import idna


class CrlfBytes(bytes):
    """Message bytes whose builder guarantees CRLF line endings and nothing else (no bare
    CR or LF): :func:`prepare_data` trusts that and skips its three scans over the body.
    :class:`digest_mail.mail.message.MessageTemplate` returns these."""

    __slots__ = ()


class DotStuffedBytes(CrlfBytes):
    """CRLF-only message bytes already in SMTP DATA form (dot-stuffed, ending with CRLF):
    :func:`prepare_data` returns them untouched. Only a builder that knows where lines
    start may make these (``MessageTemplate(dot_stuffed=True)``)."""

    __slots__ = ()


def prepare_data(data: bytes) -> bytes:
    """Message bytes as they go after DATA: CRLF line endings, lines starting with '.'
    doubled (RFC 5321 4.5.2), ending with CRLF; the terminating '.' is not included.

    Bytes that are already CRLF-normalised and contain no line starting with '.' come
    back unchanged after a few C-speed scans: no regex, no copy. For :class:`CrlfBytes`
    the line-ending scans are skipped: one ``in`` test, and one ``replace`` only when a
    line starts with '.'.
    """
    if isinstance(data, DotStuffedBytes):
        return data
    if not isinstance(data, CrlfBytes):
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            # Bare CR or LF somewhere: CRLF and CR become LF, then every LF becomes CRLF.
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def unstuff_data(data: bytes) -> bytes:
    """The inverse of the dot-stuffing in :func:`prepare_data` (what a server does)."""
    if data.startswith(b".."):
        data = data[1:]
    return data.replace(b"\r\n..", b"\r\n.")


def ascii_address(address: str) -> str:
    """``address`` with an internationalized domain in its ASCII (A-label) form.

    ``yamada@例え.jp`` → ``yamada@xn--r8jz45g.jp``: deliverable through a relay without
    SMTPUTF8. A non-ASCII local part has no ASCII form and is returned unchanged.
    """
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii() or not local.isascii():
        return address
    try:
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except idna.IDNAError:
        return address


def ascii_envelope(envelope_from: str, recipients: Sequence[str]) -> tuple[str, list[str]]:
    """The envelope in ASCII where it can be, for a relay that does not offer SMTPUTF8."""
    return ascii_address(envelope_from), [ascii_address(r) for r in recipients]


def needs_smtputf8(address: str) -> bool:
    """Only a non-ASCII local part needs SMTPUTF8; an IDN domain goes as its A-label."""
    local, _, _ = address.rpartition("@")
    return not local.isascii()
