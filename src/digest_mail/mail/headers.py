"""Header fields, written by one set of rules: every header of a message comes from here.

Values are plain text, never pre-encoded: whatever looks like RFC 2047 syntax in them
(``=?utf-8?q?…?=``) is encoded like any other text, so no reader decodes it into CR LF.
(Python 3.10-3.12 decode encoded words even with spaces inside, in Subject, in quoted
display names and in values assigned to ``EmailMessage``; handing them input text made
``Weekly =?utf-8?q?x=0D=0ABcc: v@evil.example?=`` a real Bcc line.)

Limits (RFC 5322 2.1.1, RFC 2047 2): a line is never longer than 998 octets and is
folded at 78 where there is a place to fold; a line holding an encoded word is at most
76 characters and each encoded word at most 75; an encoded word holds whole characters
(never part of a UTF-8 sequence).
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable

from digest_mail.errors import DigestMailError
from digest_mail.text import CONTROL

MAX_LINE = 998
FOLD_AT = 78
FOLD_ENCODED_AT = 76  # RFC 2047: a line that holds an encoded word
MAX_ENCODED_WORD = 75
_EW_OVERHEAD = len("=?utf-8?b??=")


class HeaderValueError(DigestMailError):
    """A value bound for a header holds a line break, a control character or is unusable."""

    def __init__(
        self, field: str, value: str, reason: str = "contains a line break or control character"
    ) -> None:
        super().__init__(
            f"{field} {value!r} {reason}",
            hint="remove it from the subscriber list or draft; it could inject headers",
        )
        self.field = field
        self.value = value


_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+(?: [A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def check_value(field: str, value: str) -> str:
    """``value`` unchanged, or :class:`HeaderValueError` if it holds a control character."""
    if CONTROL.search(value):
        raise HeaderValueError(field, value)
    return value


class _Field:
    """One header field being written: tokens joined by a space, or a fold when the
    next token would pass the line's limit."""

    def __init__(self, name: str) -> None:
        self.parts = [name, ":"]
        self.column = len(name) + 1
        self.tokens = 0
        self.encoded_line = False  # the current line holds an encoded word: 76, not 78

    def add(self, token: str) -> None:
        limit = FOLD_ENCODED_AT if self.encoded_line else FOLD_AT
        size = len(token) if token.isascii() else len(token.encode("utf-8"))
        if self.tokens and self.column + 1 + size > limit:
            self.parts.append("\r\n ")
            self.column = 1
            self.encoded_line = False
        else:
            self.parts.append(" ")
            self.column += 1
        self.parts.append(token)
        self.column += size
        self.tokens += 1
        if self.column > MAX_LINE:  # only a token with no place to fold gets here
            raise HeaderValueError(self.parts[0], token, f"makes a line over {MAX_LINE} octets")

    def add_encoded(self, text: str) -> None:
        """``text`` as B encoded words, each as long as its line allows (at most 75)."""
        start = 0
        end = len(text)
        while start < end:
            room = min(MAX_ENCODED_WORD, FOLD_ENCODED_AT - self.column - 1)
            budget = (room - _EW_OVERHEAD) // 4 * 3  # octets of text in one word
            size = 0
            stop = start
            if start == 0 and len(text) * 4 <= budget:  # the usual short name: one word
                stop = end
            while stop < end:
                width = _utf8_width(text[stop])
                if size + width > budget:
                    break
                size += width
                stop += 1
            if stop == start:  # not even one character fits on this line: a new one
                self.parts.append("\r\n")
                self.column = 0
                self.encoded_line = False
                continue
            chunk = text[start:stop].encode("utf-8")
            word = "=?utf-8?b?" + binascii.b2a_base64(chunk, newline=False).decode("ascii") + "?="
            self.parts.append(" ")
            self.parts.append(word)
            self.column += 1 + len(word)
            self.tokens += 1
            self.encoded_line = True
            start = stop

    def done(self) -> str:
        self.parts.append("\r\n")
        return "".join(self.parts)


def _utf8_width(char: str) -> int:
    code = ord(char)
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def _plain_words(name: str, text: str, *, words: list[str]) -> bool:
    """Whether ``words`` of ``text`` can go out as they are: printable ASCII, nothing a
    reader could take for an encoded word, single spaces, each word foldable within 78."""
    if not text or "=?" in text or not _PRINTABLE_ASCII.fullmatch(text):
        return False
    if text != text.strip(" ") or "  " in text:
        return False
    first = len(name) + 2
    return first + len(words[0]) <= FOLD_AT and all(1 + len(w) <= FOLD_AT for w in words[1:])


def unstructured(name: str, text: str) -> str:
    """``Name: text`` for a free-text field (Subject, X-Digest-List): folded at spaces
    when it is plain ASCII, else encoded words that carry every character, spaces too."""
    check_value(name, text)
    out = _Field(name)
    words = text.split(" ")
    if not text:
        return f"{name}: \r\n"
    if _plain_words(name, text, words=words):
        for word in words:
            out.add(word)
    else:
        out.add_encoded(text)
    return out.done()


def _add_phrase(out: _Field, display: str) -> None:
    """A display name: atoms, a quoted string, or encoded words."""
    words = display.split(" ")
    if _ATOMS.fullmatch(display) and _plain_words(out.parts[0], display, words=words):
        for word in words:
            out.add(word)
        return
    if "=?" not in display and _PRINTABLE_ASCII.fullmatch(display):
        quoted = '"' + display.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if out.column + 1 + len(quoted) <= FOLD_AT:
            out.add(quoted)
            return
    out.add_encoded(display)


def named(name: str, display: str, target: str) -> str:
    """``Name: display <target>`` (From, To, Reply-To, List-Id); ``target`` is an address
    or list id the caller has checked, ``display`` any text (may be empty; space around
    it means nothing in a phrase, and readers strip it)."""
    if CONTROL.search(display) or CONTROL.search(target):
        raise HeaderValueError(name, display if CONTROL.search(display) else target)
    display = display.strip(" ")
    if not display:
        return _finish(f"{name}: {target}", name, target)
    if not display.isascii():
        # The usual reader, once per message: a Japanese name that fits one encoded word
        # on the first line, written without the general folder.
        data = display.encode("utf-8")
        room = min(MAX_ENCODED_WORD, FOLD_ENCODED_AT - len(name) - 2)
        if len(data) <= (room - _EW_OVERHEAD) // 4 * 3:
            word = "=?utf-8?b?" + binascii.b2a_base64(data, newline=False).decode("ascii") + "?="
            line = f"{name}: {word}"
            tail = f"<{target}>"
            if len(line) + 1 + len(tail) <= FOLD_ENCODED_AT and target.isascii():
                return f"{line} {tail}\r\n"
            return _finish(f"{line}\r\n {tail}", name, target)
    out = _Field(name)
    _add_phrase(out, display)
    out.add(f"<{target}>")
    return out.done()


def _finish(text: str, name: str, target: str) -> str:
    """``text`` + CRLF, whose last line is the unfoldable ``target`` and its prefix."""
    if len(target.encode("utf-8")) + len(name) + 4 > MAX_LINE:
        raise HeaderValueError(name, target, f"makes a line over {MAX_LINE} octets")
    return text + "\r\n"


def uri_list(name: str, uris: Iterable[str]) -> str:
    """``Name: <uri>, <uri>`` (List-Unsubscribe, RFC 2369): on one line when it fits in
    78, else one URI a line, folded between them and never inside one."""
    links = [f"<{uri}>" for uri in uris if uri]
    for link in links:
        if CONTROL.search(link) or not link.isascii():
            raise HeaderValueError(name, link)
        if len(name) + 3 + len(link) > MAX_LINE:
            raise HeaderValueError(name, link, f"makes a line over {MAX_LINE} octets")
    one_line = f"{name}: " + ", ".join(links)
    if len(one_line) <= FOLD_AT:
        return one_line + "\r\n"
    return f"{name}: " + ",\r\n ".join(links) + "\r\n"


def structured(name: str, value: str) -> str:
    """``Name: value`` for a value digest-mail makes itself (Date, Message-ID,
    Content-Type): ASCII, already in its header form, folded at its spaces."""
    if not _PRINTABLE_ASCII.fullmatch(value) or "  " in value:
        raise HeaderValueError(name, value)
    out = _Field(name)
    for token in value.split(" "):
        out.add(token)
    return out.done()
