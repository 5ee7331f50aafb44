"""How sending fails, decided in one place for both SMTP connections.

Every failure a connection meets becomes one of four classes here:
:class:`TemporaryFailure` (retry later), :class:`PermanentFailure` (final for that
recipient), :class:`UncertainFailure` (the session broke once the message's final dot may
have reached the relay: never retried on a guess) and :class:`RelayError` (the relay
cannot be used at all: stop the campaign).
A connection only says what happened (a reply and the stage it came at, a lost session,
a refused login, a failed handshake); the functions below decide what that means and
write the message and the hint the sender sees. A refusal is judged by whom it is about
(:func:`classify_refusal`: RFC 3463 enhanced status code first, the stage of the
transaction second); docs/relays.md has the table.
"""

from __future__ import annotations

import re

from digest_mail.errors import DigestMailError

# The reason an address fails when the relay lacks SMTPUTF8: our gap, not the reader's
# (the campaign recognises it by this text and sends it again on the next run).
SMTPUTF8_MISSING = "the relay does not offer SMTPUTF8, needed for this non-ASCII address"

STARTTLS_FOR_AUTH_HINT = (
    "the relay offers AUTH only after STARTTLS: add ?tls=starttls to [smtp] url "
    "(smtp://USER@host:PORT?tls=starttls)"
)


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


class UncertainFailure(DeliveryError):
    """The session broke (a drop, a timeout) after the message's final dot may have
    reached the relay: it may have been queued and its 250 lost. Sending it again could
    deliver a second copy, so the reader is reported ``uncertain`` instead of retried."""


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


# --- a message the relay answered ------------------------------------------------------


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
    campaign (:class:`RelayError`). The one place both SMTP connections classify replies."""
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


def unsendable(
    message: str, *, recipient: str, about: str = "unknown", code: int | None = None
) -> PermanentFailure:
    """A message that cannot go as it is, found before the relay was asked (an address
    that cannot go into a command, a missing SMTPUTF8: ``about="ours"``)."""
    return PermanentFailure(message, code=code, recipient=recipient, about=about)


def connection_lost(
    detail: str, *, recipient: str, stage: str = ""
) -> TemporaryFailure | UncertainFailure:
    """The session broke during a message, at ``stage`` (as in :func:`refusal`). Before
    the body's end was written nothing can have been queued: retry later. From
    ``message`` on (any byte of the final dot may have reached the relay, so the relay
    may have queued it and its 250 been lost, or come after we stopped waiting) a retry
    could be a second copy: :class:`UncertainFailure`, never a retry."""
    if stage == "message":
        return UncertainFailure(
            f"connection lost after the message was sent, before its reply: {detail}",
            recipient=recipient,
        )
    return TemporaryFailure(f"connection lost: {detail}", recipient=recipient)


def ends_session(failure: DeliveryError) -> bool:
    """Whether the connection is done after ``failure``: the relay said 421 (it is
    closing this session) or the session broke. The pool reconnects for the next message."""
    return failure.code == 421 or (
        isinstance(failure, TemporaryFailure | UncertainFailure) and failure.code is None
    )


# --- a session that could not start ----------------------------------------------------


def not_connected(
    message: str, *, code: int | None = None, unreachable: bool = False
) -> TemporaryFailure:
    """The session did not start, for a reason that may pass (a 4xx greeting, a drop,
    a timeout); ``unreachable`` when no SMTP conversation took place at all."""
    return TemporaryFailure(message, code=code, unreachable=unreachable)


def never_reached(failure: TemporaryFailure) -> RelayError:
    """Unreachable from the start: a configuration problem, not a hiccup (a relay that
    answers 421 at the greeting is busy: that one is retried)."""
    return RelayError(failure.message, hint="check [smtp] url and that the relay is running")


def connection_refused(relay: str, code: int | None, text: str) -> RelayError:
    """A 5xx greeting, or a 5xx to EHLO/HELO: this relay will not talk to us."""
    return RelayError(f"{relay} refused the connection: {code} {text}", code=code)


def tls_failed(relay: str, text: str) -> RelayError:
    """The TLS handshake failed (most often: the certificate does not verify)."""
    return RelayError(f"{relay}: TLS failed: {text}", hint=tls_failure_hint(text))


def no_password(relay: str, username: str) -> RelayError:
    return RelayError(
        f"{relay}: no password for {username!r}",
        hint="set DIGEST_MAIL_SMTP_PASSWORD or [smtp] password_file (owner-only)",
    )


def login_refused(relay: str, username: str, code: int, text: str) -> RelayError:
    return RelayError(
        f"{relay} refused the login for {username!r}: {code} {text}",
        code=code,
        hint="check the username and DIGEST_MAIL_SMTP_PASSWORD",
    )


def session_refused(relay: str, detail: str, *, hint: str | None = None) -> RelayError:
    """Any other reason this relay cannot be used (no usable AUTH, no STARTTLS, a
    STARTTLS injection): ``detail`` says which, ``hint`` what to do."""
    return RelayError(f"{relay}: {detail}", hint=hint)
