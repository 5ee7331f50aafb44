"""Reading a bounce mailbox: which messages are delivery reports or complaints, and what they say.

A bounce mailbox (mbox file or Maildir folder) is read with the stdlib ``mailbox``
module. Each ``multipart/report; report-type=delivery-status`` message (RFC 3464)
carries a ``message/delivery-status`` part with one block per recipient
(Final-Recipient, Action, Status, Diagnostic-Code), read into a
:class:`RecipientStatus`. An abuse report (RFC 5965 ARF, ``report-type=feedback-report``)
names the complaining address. Reading decides nothing: what a report does to the
ledger is :mod:`digest_mail.audience.bounces`.
"""

from __future__ import annotations

import mailbox
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

from digest_mail.errors import InputError
from digest_mail.files import display_path

__all__ = [
    "ReadMessage",
    "RecipientStatus",
    "mailbox_messages",
    "parse_complaint",
    "parse_report",
    "raw_message_id",
    "read_message",
    "returned_original",
]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_BASIC_CODE = re.compile(r"\b([245])\d\d\b")


@dataclass(frozen=True)
class RecipientStatus:
    """One per-recipient block of a delivery status notification."""

    address: str
    action: str
    status: str
    diagnostic: str
    when: datetime | None = None


def _field(block: Message, name: str) -> str:
    value = block.get(name)
    # Unfold: diagnostic codes are often folded over several lines.
    return " ".join(str(value).split()) if value is not None else ""


def _address(value: str) -> str:
    """``rfc822; <taro@example.jp>`` -> ``taro@example.jp``."""
    _kind, semicolon, rest = value.partition(";")
    address = (rest if semicolon else value).strip().strip("<>").strip()
    return address if "@" in address else ""


def _date(value: str) -> datetime | None:
    if not value:
        return None
    if ";" in value:  # "Arrival-Date" never has one, but some MTAs prefix a type
        value = value.rsplit(";", 1)[-1]
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks = [b for b in payload if isinstance(b, Message)]
        if blocks:
            return blocks
    # Some reports arrive with the status part encoded: parse its text ourselves.
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text.strip())
    return [HeaderParser().parsestr(chunk) for chunk in chunks if chunk.strip()]


def parse_complaint(message: Message) -> str | None:
    """The complaining recipient of an abuse report (RFC 5965 ARF), or None.

    Providers often redact the address from the report fields; then the To of the
    returned original message names it.
    """
    if message.get_content_type() != "multipart/report":
        return None
    if message.get_param("report-type", "").lower() != "feedback-report":  # type: ignore[union-attr]
        return None
    parts = list(message.walk())
    report = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if report is None:
        return None
    blocks = _status_blocks(report)
    fields = blocks[0] if blocks else Message()
    if _field(fields, "Feedback-Type").lower() not in ("abuse", ""):
        return None
    address = _address(_field(fields, "Original-Rcpt-To"))
    if address:
        return address
    original = returned_original(message)
    if original is not None:
        return _address(_first_address(str(original.get("To", "")))) or None
    return None


def returned_original(message: Message) -> Message | None:
    """The headers of the message a report is about (message/rfc822 or text/rfc822-headers)."""
    for part in message.walk():
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            original = inner[0] if isinstance(inner, list) and inner else None
        elif part.get_content_type() == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            original = HeaderParser().parsestr(text)
        else:
            continue
        if isinstance(original, Message):
            return original
    return None


def _original_message_id(message: Message) -> str:
    original = returned_original(message)
    return str(original.get("Message-ID", "")).strip() if original is not None else ""


def _first_address(value: str) -> str:
    pairs = getaddresses([value])
    return pairs[0][1] if pairs else ""


def parse_report(message: Message) -> list[RecipientStatus] | None:
    """The per-recipient statuses of a delivery status notification; None if it is not one."""
    if message.get_content_type() != "multipart/report":
        return None
    if message.get_param("report-type", "").lower() != "delivery-status":  # type: ignore[union-attr]
        return None
    status_part = next(
        (p for p in message.walk() if p.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        return None
    blocks = _status_blocks(status_part)
    if not blocks:
        return None
    per_message, recipients = blocks[0], blocks[1:]
    if per_message.get("Final-Recipient") is not None:
        # No per-message block at all (seen from some gateways): every block is a recipient.
        per_message, recipients = Message(), blocks
    # When it bounced: the last attempt if told, else when the report was written.
    reported = _date(str(message.get("Date", ""))) or _date(_field(per_message, "Arrival-Date"))
    statuses: list[RecipientStatus] = []
    for block in recipients:
        address = _address(_field(block, "Original-Recipient")) or _address(
            _field(block, "Final-Recipient")
        )
        if not address:
            continue
        diagnostic = _field(block, "Diagnostic-Code")
        found = _STATUS.search(_field(block, "Status")) or _STATUS.search(diagnostic)
        if found:
            status = found.group(0)
        else:
            basic = _BASIC_CODE.search(diagnostic)
            status = f"{basic.group(1)}.0.0" if basic else ""
        statuses.append(
            RecipientStatus(
                address=address,
                action=_field(block, "Action").lower(),
                status=status,
                diagnostic=diagnostic,
                when=_date(_field(block, "Last-Attempt-Date")) or reported,
            )
        )
    return statuses


def mailbox_messages(path: Path) -> Iterator[tuple[str, bytes]]:
    shown = display_path(path)
    box: mailbox.Mailbox[mailbox.Message]
    if path.is_dir():
        if not (path / "cur").is_dir() or not (path / "new").is_dir():
            raise InputError(
                "is a folder but not a Maildir (no cur/ and new/)",
                path=shown,
                hint="give an mbox file or a Maildir folder",
            )
        box = mailbox.Maildir(path, factory=None, create=False)
    elif path.is_file():
        box = mailbox.mbox(path, create=False)
    else:
        raise InputError("no such mbox file or Maildir folder", path=shown)
    try:
        for number, key in enumerate(box.iterkeys(), start=1):
            yield (
                (f"message {number}" if isinstance(box, mailbox.mbox) else key),
                box.get_bytes(key),
            )
    finally:
        box.close()


_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S{1,200})", re.IGNORECASE | re.MULTILINE)


def raw_message_id(data: bytes) -> str:
    """The Message-ID read from the raw header block, for naming a message the parser
    could not read (it must not need the parser)."""
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    found = _MESSAGE_ID.search(head)
    return found.group(1).decode("ascii", "replace") if found else ""


@dataclass(frozen=True)
class ReadMessage:
    """What one message of a bounce mailbox says: its delivery statuses (None: not a
    delivery report), else who complained (None: no abuse report either), the
    Message-ID of the message it returns and its own."""

    statuses: list[RecipientStatus] | None
    complainer: str | None
    original_id: str
    own_id: str


def read_message(parser: BytesParser[EmailMessage], data: bytes) -> ReadMessage:
    message = parser.parsebytes(data)
    assert isinstance(message, EmailMessage)
    statuses = parse_report(message)
    return ReadMessage(
        statuses=statuses,
        complainer=parse_complaint(message) if statuses is None else None,
        original_id=_original_message_id(message),
        own_id=str(message.get("Message-ID", "")).strip(),
    )
