"""The reply reader: however the server's bytes are cut into reads, the same replies.

The reader has a fast path for the usual read (whole one-line replies ending in CRLF)
and a general one (continuation lines, partial lines, bare LF); these properties hold
both to the same result.
"""

from __future__ import annotations

import asyncio
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from digest_mail.transport.smtpclient import Reply, SmtpConnectionLost, _ReplyReader

_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"),
    max_size=30,
)
_REPLY = st.tuples(st.integers(200, 599), st.lists(_TEXT, min_size=1, max_size=3))


def _wire(replies: list[tuple[int, list[str]]], newline: bytes) -> bytes:
    out = b""
    for code, lines in replies:
        for index, line in enumerate(lines):
            mark = "-" if index < len(lines) - 1 else " "
            out += f"{code}{mark}{line}".encode() + newline
    return out


def _read(chunks: list[bytes]) -> _ReplyReader:
    loop = asyncio.new_event_loop()  # data_received never touches the loop
    loop.close()
    reader = _ReplyReader(loop)
    for chunk in chunks:
        reader.data_received(chunk)
    return reader


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=300, deadline=None)
@given(
    replies=st.lists(_REPLY, min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    newline=st.sampled_from([b"\r\n", b"\n"]),
)
def test_replies_do_not_depend_on_how_the_stream_is_cut(
    replies: list[tuple[int, list[str]]], cuts: list[int], newline: bytes
) -> None:
    data = _wire(replies, newline)
    expected = [Reply(code, "\n".join(lines)) for code, lines in replies]
    assert list(_read([data]).replies) == expected
    assert list(_read(_cut(data, cuts)).replies) == expected


def test_a_line_that_is_not_smtp_fails_the_connection_in_either_path() -> None:
    for chunks in ([b"250 ok\r\nhello\r\n"], [b"250 ok\r\n", b"hel", b"lo\r\n"]):
        reader = _read(chunks)
        assert list(reader.replies) == [Reply(250, "ok")]
        assert isinstance(reader.lost, SmtpConnectionLost)
        assert "not SMTP" in str(reader.lost)
