"""What every message digest-mail writes may hold in its head: the header names, and the
line and encoded-word limits of RFC 5322 and RFC 2047. Shared by the header property
tests (tests/delivery) and the hostile list tests (tests/audience)."""

from __future__ import annotations

import base64
import re

HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "x-digest-edition",
    "x-digest-list",
    "mime-version",
    "content-type",
}
ENCODED_WORD = re.compile(rb"=\?[^?]*\?[bBqQ]\?[^?]*\?=")


def check_limits(data: bytes) -> None:
    """Every header line within the limits of RFC 5322 and RFC 2047."""
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        assert len(line) <= 998, line
        words = ENCODED_WORD.findall(line)
        for word in words:
            assert len(word) <= 75, word
            base64.b64decode(word.split(b"?")[3]).decode("utf-8")  # whole characters
        if words:
            assert len(line) <= 76, line
        elif len(line) > 78:  # only when there is no space left to fold at
            rest = line[1:] if line[:1] == b" " else line.partition(b": ")[2]
            assert b" " not in rest, line
