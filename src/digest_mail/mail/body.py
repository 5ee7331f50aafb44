"""A message's two text parts, each encoded once per edition and filled per reader.

:func:`prepare_body` turns a draft's text or HTML into a :class:`Body`: CRLF line ends,
split at the placeholder tokens (:data:`digest_mail.mail.placeholders.TOKENS`), encoded
to UTF-8 once. Per reader, :meth:`Body.render` joins the pieces with that reader's
values: no parsing, no encoding of the whole part, and, for an SMTP client that takes
DATA as is, the dot-stuffing done once too.

A part travels as 8bit while every line stays within 998 octets (RFC 5322), else as
base64. The HTML renderer writes lines of a thousand characters and more, so
:func:`fold_html_lines` breaks them first where a line break means what a space meant.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from digest_mail.mail.placeholders import TOKENS

__all__ = ["Body", "BodyEncoding", "fold_html_lines", "prepare_body"]

BodyEncoding = Literal["8bit", "base64"]
MAX_LINE = 998

FOLD_AT = 900  # octets; leaves room under 998 for per-recipient values


def fold_html_lines(html: str, limit: int = FOLD_AT) -> str:
    """Break HTML lines longer than ``limit`` octets at a space between a tag's attributes.

    There a line break means exactly what the space meant, so the page is unchanged,
    and the HTML part can travel as 8bit (lines <= 998 octets) instead of base64: MJML
    and premailer write 1,000+ character lines of nested tables.
    """
    if len(html) <= limit or all(len(line.encode("utf-8")) <= limit for line in html.split("\n")):
        return html
    out: list[str] = []
    for line in html.split("\n"):
        while len(line.encode("utf-8")) > limit:
            cut = _attribute_space(line, limit)
            if cut is None:
                break
            out.append(line[:cut])
            line = line[cut + 1 :]
        out.append(line)
    return "\n".join(out)


def _attribute_space(line: str, limit: int) -> int | None:
    """Index of the last space inside a tag, outside quotes, within ``limit`` octets."""
    best = None
    size = 0
    in_tag = False
    quote = ""
    for index, char in enumerate(line):
        size += len(char.encode("utf-8"))
        if size > limit:
            break
        if quote:
            if char == quote:
                quote = ""
        elif in_tag:
            if char in "\"'":
                quote = char
            elif char == ">":
                in_tag = False
            elif char == " " and index > 0:
                best = index
        elif (
            char == "<"
            and index + 1 < len(line)
            and (line[index + 1].isalpha() or line[index + 1] == "/")
        ):
            in_tag = True
    return best


@dataclass(frozen=True)
class Body:
    """One text part: its pieces between tokens, encoded once."""

    subtype: str
    pieces: tuple[bytes, ...]  # literal bytes, already CRLF and in the part's charset
    tokens: tuple[str, ...]  # the token between pieces[i] and pieces[i+1]
    escape: bool  # HTML-escape the values
    encoding: BodyEncoding
    # For 8bit: per line holding tokens, its length without them and its tokens' indices,
    # so a recipient whose values would push a line past 998 octets is caught cheaply.
    token_lines: tuple[tuple[int, tuple[int, ...]], ...]
    # The pieces with every '.' that follows a CRLF inside them doubled (SMTP DATA form).
    stuffed_pieces: tuple[bytes, ...] = ()
    # The longest line holding tokens without them, and the most tokens on one line:
    # values up to (MAX_LINE - longest_base) // most_tokens octets always fit.
    longest_base: int = 0
    most_tokens: int = 0

    def header(self, encoding: BodyEncoding) -> bytes:
        return _PART_HEADERS[self.subtype, encoding]

    def render(self, values: Mapping[str, bytes], *, stuffed: bool = False) -> list[bytes]:
        if stuffed and self.encoding == "8bit" and self._fits(values):
            return [self.header("8bit"), *self._stuffed(values)]
        filled = [self.pieces[0]]
        for token, piece in zip(self.tokens, self.pieces[1:], strict=True):
            filled.append(values[token])
            filled.append(piece)
        if self.encoding == "8bit" and self._fits(values):
            return [self.header("8bit"), *filled]
        # base64: the values are inside the body, so encode it per recipient (one pass).
        return [self.header("base64"), _base64_lines(b"".join(filled))]

    def _stuffed(self, values: Mapping[str, bytes]) -> list[bytes]:
        """The 8bit body already dot-stuffed. Values hold no CR or LF, so a line can
        only start inside a piece (done once, in ``stuffed_pieces``) or where a chunk
        follows one that ended a line: the body's start (after the part header's blank
        line), or a value or piece right after a piece ending with CRLF."""
        pieces = self.stuffed_pieces
        chunks = [pieces[0]]
        for token, piece in zip(self.tokens, pieces[1:], strict=True):
            chunks.append(values[token])
            chunks.append(piece)
        if pieces[0][:1] != b"." and all(v and v[:1] != b"." for v in values.values()):
            # The usual recipient: no value is empty or starts with '.', so only the
            # pieces' own line starts count, and stuffed_pieces has them.
            return chunks
        out: list[bytes] = []
        line_start = True
        for chunk in chunks:
            if chunk:
                if line_start and chunk[:1] == b".":
                    out.append(b".")
                out.append(chunk)
                line_start = chunk[-2:] == b"\r\n"
        return out

    def _fits(self, values: Mapping[str, bytes]) -> bool:
        if not self.token_lines:
            return True
        longest = max(len(value) for value in values.values())
        if self.longest_base + self.most_tokens * longest <= MAX_LINE:
            return True  # no line can outgrow the limit, whoever the recipient is
        for base, indices in self.token_lines:
            if base + sum(len(values[self.tokens[i]]) for i in indices) > MAX_LINE:
                return False
        return True


_PART_HEADERS = {
    (subtype, encoding): (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode("ascii")
    for subtype in ("plain", "html")
    for encoding in ("8bit", "base64")
}


def _base64_lines(data: bytes) -> bytes:
    encoded = binascii.b2a_base64(data, newline=False)
    return b"".join([encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76)])


def _crlf(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    return text.replace("\n", "\r\n")


def prepare_body(text: str, *, subtype: str, escape: bool, encoding: BodyEncoding) -> Body:
    text = _crlf(text)
    parts = TOKENS.split(text)
    found = tuple(TOKENS.findall(text))
    pieces = tuple(p.encode("utf-8") for p in parts)
    token_lines: list[tuple[int, tuple[int, ...]]] = []
    if encoding == "8bit":
        # Walk lines, tracking which tokens sit on each; a literal line over the limit
        # means 8bit cannot carry this body at all.
        line_len = 0
        line_tokens: list[int] = []
        for index, piece in enumerate(pieces):
            chunks = piece.split(b"\r\n")
            for n, chunk in enumerate(chunks):
                if n > 0:
                    if line_tokens:
                        token_lines.append((line_len, tuple(line_tokens)))
                    elif line_len > MAX_LINE:
                        encoding = "base64"
                    line_len, line_tokens = 0, []
                line_len += len(chunk)
            if index < len(found):
                line_tokens.append(index)
        if line_tokens:
            token_lines.append((line_len, tuple(line_tokens)))
        if any(base > MAX_LINE for base, _ in token_lines):
            encoding = "base64"
    return Body(
        subtype=subtype,
        pieces=pieces,
        tokens=found,
        escape=escape,
        encoding=encoding,
        token_lines=tuple(token_lines),
        stuffed_pieces=tuple(p.replace(b"\r\n.", b"\r\n..") for p in pieces),
        longest_base=max((base for base, _ in token_lines), default=0),
        most_tokens=max((len(indices) for _, indices in token_lines), default=0),
    )
