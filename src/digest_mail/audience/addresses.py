"""Addresses: the normalized form a list stores and the key every table compares.

A leaf (it imports nothing from digest_mail but the error base) because every stage
compares addresses: the lists, the bounce reader, the snapshot writer and the ledger's
suppressions all key an address the same way, and the ledger must not load the lists
(nor anything above it) to do so.

email-validator checks the syntax (no DNS); a plain dot-atom local part takes a fast
path, and domains are checked once each, since a list shares few of them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from digest_mail.errors import DigestMailError

__all__ = ["AddressError", "address_key", "normalize_address"]

# A plain ASCII dot-atom local part: email-validator accepts every such local part of at
# most 64 characters, so only the domain needs the (cached) full check.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


class AddressError(DigestMailError):
    """An address that email-validator rejects (syntax only, no DNS)."""


@lru_cache(maxsize=4096)
def _check_domain(domain: str) -> tuple[str, str] | str:
    """(normalized domain, ASCII domain) or the validator's reason; lists share few domains."""
    # Imported here: compiling its patterns is 40 ms, and a send's own process never
    # checks an address (its snapshot writer does).
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email("a@" + domain, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return result.domain, result.ascii_domain


def normalize_address(value: str) -> tuple[str, str]:
    """(address with its domain normalized, casefolded key); raises :class:`AddressError`."""
    local, at, domain = value.rpartition("@")
    if at and len(local) <= 64 and _DOT_ATOM.fullmatch(local):
        checked = _check_domain(domain)
        if isinstance(checked, tuple) and len(local) + 1 + len(checked[1]) <= 254:
            email = f"{local}@{checked[0]}"
            return email, email.casefold()
    from email_validator import EmailNotValidError, validate_email

    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise AddressError(f"{value!r} is not a valid address ({exc})") from None
    email = f"{result.local_part}@{result.domain}"
    return email, email.casefold()


def address_key(value: str) -> str:
    """The comparison key of an address that may not validate (e.g. from a bounce)."""
    local, at, domain = value.strip().rpartition("@")
    if not at:
        return value.strip().casefold()
    checked = _check_domain(domain)
    if isinstance(checked, tuple):
        domain = checked[0]
    return f"{local}@{domain}".casefold()
