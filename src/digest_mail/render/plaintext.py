"""Plain-text layout for Japanese: wrapping by display columns, URLs never broken.

East Asian Wide and Fullwidth characters take two columns in a terminal or a mail
client's fixed-width view, so a 72-column line holds 36 kanji. Japanese has no spaces:
a line may break between any two wide characters, except that closing punctuation
(。、」…) does not start a line and opening brackets never end one. Nothing hangs past
the margin: the character before the punctuation moves down with it (追い出し), so a
line never exceeds the width unless a URL, which is never broken, makes it.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["URL_RE", "display_width", "is_url_line", "wrap_lines", "wrap_text"]

URL_RE = re.compile(r"(?:https?://|mailto:|@@[a-z_]+_url@@)\S*")
# Closing punctuation and small kana that must not start a line.
_NO_START = set(
    "、。，．,.!?！？)）」』】〉》〕］｝ー々ゝゞぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮ…‥・：；:;"
)
# Tokens moved down with closing punctuation at most (e.g. 字」。): a longer run of
# punctuation starts a line rather than emptying the one before.
_MAX_CARRY = 3
# Opening brackets that must not end a line.
_NO_END = set("(（「『【〈《〔［｛")
_TOKEN_RE = re.compile(
    r"(?P<url>" + URL_RE.pattern + r")"
    r"|(?P<space>[ \t]+)"
    # A word stops where a URL starts, so '出典:https://…' keeps its URL whole.
    r"|(?P<word>(?:(?!" + URL_RE.pattern + r")[A-Za-z0-9\u00c0-\u024f_'\-.,:;!?/%&+#=@$*~^])+)"
    r"|(?P<char>.)",
    re.DOTALL,
)


def char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes in a fixed-width font (wide/fullwidth characters count two)."""
    return sum(char_width(c) for c in text)


def is_url_line(line: str, *, width: int) -> bool:
    """True when ``line`` is too wide only because of a URL it holds (allowed to exceed)."""
    rest = URL_RE.sub("", line)
    return rest != line and display_width(rest.rstrip()) <= width


def _tokens(paragraph: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for match in _TOKEN_RE.finditer(paragraph):
        kind = match.lastgroup or "char"
        out.append((kind, match.group()))
    return out


def _split_long(word: str, width: int) -> list[str]:
    pieces, current, used = [], "", 0
    for char in word:
        w = char_width(char)
        if current and used + w > width:
            pieces.append(current)
            current, used = "", 0
        current += char
        used += w
    if current:
        pieces.append(current)
    return pieces


def _wrap_paragraph(paragraph: str, width: int, first: str, rest: str) -> list[str]:
    lines: list[str] = []
    line: list[str] = []
    indent = first
    used = display_width(indent)

    def flush() -> None:
        nonlocal line, indent, used
        text = (indent + "".join(line)).rstrip()
        lines.append(text)
        line, indent = [], rest
        used = display_width(indent)

    for kind, text in _tokens(paragraph):
        if kind == "space":
            if line:
                line.append(" ")
                used += 1
            continue
        w = display_width(text)
        if kind == "word" and w > width - display_width(rest):
            pieces = _split_long(text, width - display_width(rest))
        else:
            pieces = [text]
        for piece in pieces:
            w = display_width(piece)
            if not line or used + w <= width:
                line.append(piece)
                used += w
                continue
            carry: list[str] = []
            while line and line[-1] == " ":
                line.pop()
            if kind == "char" and piece in _NO_START:
                # Move the character before (and punctuation before it) down with it.
                while len(line) > 1 and len(carry) < _MAX_CARRY:
                    carry.insert(0, line.pop())
                    if carry[0] not in _NO_START or line[-1] == " ":
                        break
                else:
                    if carry and carry[0] in _NO_START:
                        line.extend(carry)
                        carry = []
            while len(line) > 1 and line[-1] in _NO_END:
                carry.insert(0, line.pop())
            while line and line[-1] == " ":
                line.pop()
            flush()
            for c in carry:
                line.append(c)
                used += display_width(c)
            line.append(piece)
            used += w
    if line or not lines:
        flush()
    return lines


def wrap_lines(
    text: str, *, width: int = 72, indent: str = "", subsequent_indent: str | None = None
) -> list[str]:
    """Wrap ``text`` to ``width`` display columns; each input line is its own paragraph."""
    rest = indent if subsequent_indent is None else subsequent_indent
    out: list[str] = []
    for number, paragraph in enumerate(text.split("\n")):
        first = indent if number == 0 else rest
        if not paragraph.strip():
            out.append("")
            continue
        out.extend(_wrap_paragraph(paragraph.strip(), width, first, rest))
    return out


def wrap_text(
    text: str, width: int = 72, indent: str = "", subsequent_indent: str | None = None
) -> str:
    """:func:`wrap_lines` joined with newlines (the ``wrap`` filter of text templates)."""
    return "\n".join(
        wrap_lines(text, width=width, indent=indent, subsequent_indent=subsequent_indent)
    )
