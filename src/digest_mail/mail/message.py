"""Per-recipient messages: the reference builder and the fast splicing builder.

:func:`build_message` is the slow, obviously-correct stdlib builder (an
``EmailMessage``); compose uses it for ``preview.eml`` and tests use it as the yardstick.

:class:`MessageTemplate` is what the send path uses: the edition's headers and bodies
are encoded once, split at the per-recipient values, and each recipient costs one
``bytes.join`` (no ``EmailMessage`` per recipient: that alone caps a sender near
400 msg/s). A spliced message parses to the same headers and decoded parts as the
reference one; ``tests/mail/test_message.py`` checks that.

Both take their header fields from the functions here, the per-reader values from
:mod:`digest_mail.mail.placeholders` and the form of their bodies from
:mod:`digest_mail.mail.body`.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Protocol

from digest_mail.config import Settings
from digest_mail.errors import DigestMailError
from digest_mail.mail import headers
from digest_mail.mail.body import BodyEncoding, fold_html_lines, prepare_body
from digest_mail.mail.headers import HeaderValueError
from digest_mail.mail.placeholders import fill, fill_values, placeholder_values
from digest_mail.transport.wire import CrlfBytes, DotStuffedBytes, ascii_address

# One line of a message may be 998 octets (RFC 5322); policy.SMTP's default of 78
# folds a long List-Unsubscribe URL into encoded words, which breaks it.
POLICY = email_policy.SMTP.clone(max_line_length=998)
EDITION_HEADER = "X-Digest-Edition"


class DraftLike(Protocol):
    """What message building needs of ``digest_mail.render.draft.Draft``."""

    @property
    def id(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...


# What may not appear in a List-Unsubscribe link: control characters, and what would end the <…>.
_UNSUBSCRIBE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029 <>,]")
_ADDRESS_BAD = re.compile(r"[\x00-\x20\x7f<>\"(),;\\\[\]]")
# A list id is a dot-atom (RFC 2919).
_LIST_ID = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")


def check_header_value(field: str, value: str) -> str:
    """Return ``value`` unchanged, or raise :class:`HeaderValueError` if it holds a
    control character. Encoded-word syntax needs no refusal here: :mod:`headers`
    encodes it like any text, so it reaches the reader literally."""
    return headers.check_value(field, value)


def check_address(field: str, address: str) -> str:
    if not address or _ADDRESS_BAD.search(address) or address.count("@") != 1:
        raise HeaderValueError(field, address)
    return address


def _sender_address(settings: Settings) -> str:
    """The bare address of ``[newsletter] from``, read once its text is known to be a
    header value: a control character inside the quoted name would otherwise make the
    parser give up and return no address at all."""
    return parseaddr(check_header_value("From", settings.newsletter.sender))[1]


def sender_domain(settings: Settings) -> str:
    domain = _sender_address(settings).rpartition("@")[2].strip().lower()
    if not domain:
        raise DigestMailError(
            f"newsletter.from {settings.newsletter.sender!r} has no domain",
            hint='set [newsletter] from = "Name <digest@example.jp>" in digest-mail.toml',
        )
    return domain


def envelope_sender(settings: Settings) -> str:
    """The bare address of ``[newsletter] from``: the SMTP envelope sender."""
    return _sender_address(settings)


def new_message_id(domain: str, random_bits: bytes | None = None) -> str:
    """A unique Message-ID on the sender's domain: 128 random bits, ``random_bits`` when
    the caller has read them from the system's CSPRNG already."""
    return f"<{(random_bits or secrets.token_bytes(16)).hex()}@{domain}>"


def list_id_field(settings: Settings, *, test_send: bool = False) -> str:
    """``List-Id: Chrysanthemum Digest <weekly.chrysanthemum-digest.example.jp>`` (RFC 2919).

    A test send carries ``<test.…>`` instead: it must never look like (or be filtered
    as) the list's own mail.
    """
    name = settings.newsletter.name
    ident = check_header_value("newsletter.list_id", settings.newsletter.list_id)
    if not _LIST_ID.fullmatch(ident):
        raise HeaderValueError(
            "newsletter.list_id", ident, "is not a list id like weekly.example.jp"
        )
    if test_send:
        ident = f"test.{ident}"
        name = f"{name} test" if name else "test"
    return headers.named("List-Id", check_header_value("newsletter.name", name), ident)


def list_unsubscribe_field(unsubscribe_url: str, unsubscribe_mailto: str) -> str:
    """``List-Unsubscribe: <https://…>,\\r\\n <mailto:…>``, folded between the links."""
    for field, value in (
        ("unsubscribe URL", unsubscribe_url),
        ("unsubscribe mailto", unsubscribe_mailto),
    ):
        if _UNSUBSCRIBE_BAD.search(value):
            raise HeaderValueError(field, value)
    return headers.uri_list("List-Unsubscribe", (unsubscribe_url, unsubscribe_mailto))


def sender_field(name: str, settings: Settings, value: str) -> str:
    """``From``/``Reply-To`` from a ``Name <addr>`` setting, its name encoded by the rules
    of every header (never handed to a parser that would decode it)."""
    display, address = parseaddr(value)
    check_address(f"newsletter.{name.lower()}", address)
    return headers.named(name, display, address)


def build_message(
    draft: DraftLike,
    *,
    settings: Settings,
    to_address: str,
    to_name: str,
    list_name: str,
    unsubscribe_url: str,
    unsubscribe_mailto: str,
    message_id: str | None = None,
    date: datetime | None = None,
    subject_prefix: str = "",
    test_send: bool = False,
) -> EmailMessage:
    """The complete multipart/alternative message for one recipient (reference builder):
    the stdlib's MIME structure and bodies, headers from :mod:`digest_mail.mail.headers`."""
    check_address("recipient address", to_address)
    check_header_value("recipient name", to_name)
    subject = check_header_value("subject", subject_prefix + draft.subject)
    domain = sender_domain(settings)
    text_values, html_values = fill_values(
        settings=settings, to_address=to_address, to_name=to_name, unsubscribe_url=unsubscribe_url
    )
    msg = EmailMessage(policy=POLICY)
    fields = [
        sender_field("From", settings, settings.newsletter.sender),
        format_to(to_address, to_name),
        headers.unstructured("Subject", subject),
        headers.structured("Date", format_datetime(date or datetime.now(UTC))),
        headers.structured("Message-ID", message_id or new_message_id(domain)),
        *_static_fields(settings, draft, list_name, test_send=test_send),
        list_unsubscribe_field(unsubscribe_url, unsubscribe_mailto),
    ]
    _set_fields(msg, fields)
    msg.set_content(fill(draft.text, text_values), subtype="plain", charset="utf-8")
    msg.add_alternative(
        fill(fold_html_lines(draft.html), html_values), subtype="html", charset="utf-8"
    )
    # The stdlib's Content-Type would be one unfolded line: write ours, boundary too.
    del msg["Content-Type"]
    _set_fields(msg, [headers.structured("Content-Type", _multipart(_new_boundary(draft)))])
    return msg


def build_text_message(
    *,
    settings: Settings,
    to_addresses: Sequence[str],
    subject: str,
    text: str,
) -> EmailMessage:
    """A short plain-text message from the newsletter's sender, not list mail (the staff
    notice of the scheduler): no List-* fields, ``Auto-Submitted: auto-generated`` so
    that no responder answers it, and the other fields written as every message's are."""
    for address in to_addresses:
        check_address("recipient address", address)
    msg = EmailMessage(policy=POLICY)
    fields = [
        sender_field("From", settings, settings.newsletter.sender),
        headers.structured("To", ", ".join(ascii_address(a) for a in to_addresses)),
        headers.unstructured("Subject", check_header_value("subject", subject)),
        headers.structured("Date", format_datetime(datetime.now(UTC))),
        headers.structured("Message-ID", new_message_id(sender_domain(settings))),
        headers.structured("Auto-Submitted", "auto-generated"),
    ]
    _set_fields(msg, fields)
    msg.set_content(text, charset="utf-8", cte="8bit")
    return msg


def _set_fields(msg: EmailMessage, fields: list[str]) -> None:
    for field in fields:
        # Raw, as written: assigning a value would have the stdlib parse it (and decode
        # anything that looks like an encoded word) and fold it by its own rules.
        name, _, value = field.removesuffix("\r\n").partition(":")
        value = value.removeprefix(" ")
        msg.set_raw(name, value.encode("utf-8").decode("ascii", "surrogateescape"))


def _new_boundary(draft: DraftLike) -> str:
    boundary = "=_dm_" + secrets.token_hex(12)
    while boundary in draft.html or boundary in draft.text:  # pragma: no cover
        boundary = "=_dm_" + secrets.token_hex(12)
    return boundary


def _multipart(boundary: str) -> str:
    return f'multipart/alternative; boundary="{boundary}"'


def format_to(address: str, name: str) -> str:
    """The To field for one recipient, ready to splice (CRLF-terminated, folded)."""
    check_address("recipient address", address)
    return headers.named("To", check_header_value("recipient name", name), ascii_address(address))


def _static_fields(
    settings: Settings, draft: DraftLike, list_name: str, *, test_send: bool
) -> list[str]:
    """The fields every recipient of the edition shares, after Message-ID."""
    fields = []
    if settings.newsletter.reply_to:
        fields.append(sender_field("Reply-To", settings, settings.newsletter.reply_to))
    fields += [
        list_id_field(settings, test_send=test_send),
        headers.structured("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        headers.unstructured(EDITION_HEADER, draft.id),
        headers.unstructured("X-Digest-List", list_name),
    ]
    return fields


# --- the fast builder ------------------------------------------------------------------


class MessageTemplate:
    """An edition encoded once; :meth:`render` splices one recipient's message bytes.

    The result is CRLF-terminated RFC 5322 bytes (not yet dot-stuffed), the exact bytes
    that get signed and sent. With ``dot_stuffed`` (for an SMTP client that takes DATA
    as is, and only when nothing signs the message) it is already in SMTP DATA form:
    :class:`~digest_mail.transport.wire.DotStuffedBytes`, so no per-message scan is left.
    """

    def __init__(
        self,
        draft: DraftLike,
        *,
        settings: Settings,
        list_name: str,
        subject_prefix: str = "",
        body_encoding: BodyEncoding = "8bit",
        dot_stuffed: bool = False,
        test_send: bool = False,
    ) -> None:
        self.settings = settings
        self.dot_stuffed = dot_stuffed
        self.domain = sender_domain(settings)
        self.envelope_from = envelope_sender(settings)
        subject = check_header_value("subject", subject_prefix + draft.subject)
        boundary = _new_boundary(draft)
        self._head_from = sender_field("From", settings, settings.newsletter.sender).encode()
        self._head_subject = headers.unstructured("Subject", subject).encode("utf-8")
        rest = [
            *_static_fields(settings, draft, list_name, test_send=test_send),
            headers.structured("MIME-Version", "1.0"),
            headers.structured("Content-Type", _multipart(boundary)),
        ]
        self._head_rest = "".join(rest).encode("utf-8")
        self._delimiter = f"\r\n--{boundary}\r\n".encode("ascii")
        self._close = f"\r\n--{boundary}--\r\n".encode("ascii")
        self._preamble_delim = f"--{boundary}\r\n".encode("ascii")
        self.text = prepare_body(draft.text, subtype="plain", escape=False, encoding=body_encoding)
        self.html = prepare_body(
            fold_html_lines(draft.html), subtype="html", escape=True, encoding=body_encoding
        )

    def render(
        self,
        *,
        to_address: str,
        to_name: str,
        unsubscribe_url: str,
        unsubscribe_mailto: str,
        message_id: str | None = None,
        date: str | None = None,
    ) -> bytes:
        """One recipient's message; ``date`` is an RFC 5322 date string (default: now)."""
        to_field = format_to(to_address, to_name)
        unsub = list_unsubscribe_field(unsubscribe_url, unsubscribe_mailto)
        text_b, html_b = self._values(to_address, to_name, unsubscribe_url)
        mid = message_id or new_message_id(self.domain)
        check_header_value("Message-ID", mid)
        head = b"".join(
            (
                self._head_from,
                to_field.encode("utf-8"),  # an SMTPUTF8 address stays UTF-8 (RFC 6532)
                self._head_subject,
                b"Date: ",
                (date or format_datetime(datetime.now(UTC))).encode("ascii"),
                b"\r\nMessage-ID: ",
                mid.encode("ascii"),
                b"\r\n",
                unsub.encode("ascii"),
                self._head_rest,
                b"\r\n",
            )
        )
        # Every piece is CRLF and no value holds CR or LF: CrlfBytes lets the SMTP
        # client skip its line-ending scans (tens of µs a message).
        marker = DotStuffedBytes if self.dot_stuffed else CrlfBytes
        return marker(
            b"".join(
                (
                    head,
                    self._preamble_delim,
                    *self.text.render(text_b, stuffed=self.dot_stuffed),
                    self._delimiter,
                    *self.html.render(html_b, stuffed=self.dot_stuffed),
                    self._close,
                )
            )
        )

    def _values(
        self, to_address: str, to_name: str, unsubscribe_url: str
    ) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """:func:`fill_values` as bytes, per recipient: a value with nothing to escape
        (the usual address, name and link) is encoded once for both parts."""
        text: dict[str, bytes] = {}
        markup: dict[str, bytes] = {}
        for token, value in placeholder_values(self.settings, to_address, to_name, unsubscribe_url):
            encoded = value.encode("utf-8")
            text[token] = encoded
            markup[token] = (
                html.escape(value, quote=True).encode("utf-8")
                if _HTML_SPECIAL.search(value)
                else encoded
            )
        return text, markup


# What html.escape(quote=True) changes.
_HTML_SPECIAL = re.compile("[&<>\"']")
