"""Which encoding a list file is in: UTF-8 or cp932 (Shift_JIS), told apart or refused.

Excel in Japan saves CSV as cp932 unless told "CSV UTF-8", so both arrive. A BOM settles
it (UTF-8 or UTF-16); otherwise the file is decoded as UTF-8, then as cp932, and the
first one that reads the whole file without an error (or, for cp932, without a
private-use character) wins. Bytes that are valid in both and read differently are
refused with both readings rather than guessed at: a wrong guess garbles every name.
"""

from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass
from pathlib import Path

from digest_mail.errors import InputError
from digest_mail.files import display_path

__all__ = ["ENCODINGS", "detect_encoding"]

_CHUNK = 1 << 20


_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")


@dataclass(frozen=True)
class _Undecodable:
    line: int
    bad: bytes
    after_text: bool  # decoded text beyond Latin came before the error (see detect_encoding)


# Japanese in UTF-8 is three-byte sequences (U+0800 and up); cp932 bytes almost never
# happen to form one, while they do form two-byte ones ("ﾅｶ" is valid UTF-8).
# (Written as the complement: the range itself takes the regex compiler 6 ms.)
_WIDE = re.compile("[^\x00-\u07ff]")


@dataclass
class _Seen:
    """What a decoding pass that succeeded saw: any non-ASCII byte, any character of
    U+0800 and up (Japanese in UTF-8)."""

    non_ascii: bool = False
    wide: bool = False


def _first_undecodable(
    stream: io.BufferedReader, encoding: str, seen: _Seen | None = None
) -> _Undecodable | None:
    """Where decoding ``stream`` first fails, or None if all of it decodes (then ``seen``
    tells what it held)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 1
    wide = False
    non_ascii = False
    while True:
        chunk = stream.read(_CHUNK)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            # Bytes still pending from the previous chunk are never a newline.
            before = exc.object[: exc.start]
            return _Undecodable(
                lines + before.count(b"\n"),
                exc.object[exc.start : exc.end],
                wide or bool(_WIDE.search(before.decode(encoding, "replace"))),
            )
        # cp932 maps unassigned bytes and user-defined characters into the private use
        # area: in a subscriber list that is a wrong guess, never a name.
        private = _PRIVATE_USE.search(text) if encoding == "cp932" else None
        if private:
            offset = len(text[: private.start()].encode(encoding))
            return _Undecodable(
                lines + chunk[:offset].count(b"\n"), private.group().encode(encoding), wide
            )
        if not chunk:
            if seen is not None:
                seen.wide, seen.non_ascii = wide, non_ascii
            return None
        wide = wide or bool(_WIDE.search(text))
        non_ascii = non_ascii or not chunk.isascii()
        lines += chunk.count(b"\n")


# A word of half-width katakana standing alone (not glued to ASCII letters or digits, as
# the misread bytes of "Müller" are: "Mﾃｼller"): what a cp932 name looks like.
_KANA_WORD = re.compile(r"(?<![A-Za-z0-9])[\uff61-\uff9f]{2,}(?![A-Za-z0-9])")
# Read as cp932, UTF-8 Latin text has its katakana glued to ASCII letters ("Mﾃｼller"):
# anywhere in the file, that settles it as UTF-8.
_GLUED = re.compile(r"[A-Za-z][^\x00-\x7f]|[^\x00-\x7f][A-Za-z]")
ENCODINGS = ("utf-8", "cp932")


def _both_readings(path: Path) -> tuple[int, str, str] | None:
    """(line, UTF-8 reading, cp932 reading) when a file that decodes as UTF-8 without one
    Japanese character also decodes as cp932 into half-width katakana words.

    cp932's half-width katakana are the bytes A1–DF, and two of them are often a valid
    UTF-8 character: ``ﾅｶﾆｼ`` (c5 b6 c6 bc) reads as ``ŶƼ``. Which one is meant cannot be
    told from the bytes; guessing either way silently garbles every name."""
    found: tuple[int, str, str] | None = None
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if raw.isascii():
                continue
            try:
                as_cp932 = raw.decode("cp932")
            except UnicodeDecodeError:
                return None
            if _PRIVATE_USE.search(as_cp932) or _GLUED.search(as_cp932):
                return None
            if found is None and _KANA_WORD.search(as_cp932):
                found = (number, raw.decode("utf-8", "replace").strip(), as_cp932.strip())
    return found


def detect_encoding(path: Path) -> str:
    """The encoding to read ``path`` with; :class:`InputError` naming the line where
    neither fits, or where both do and read differently."""
    with path.open("rb") as stream:
        head = stream.read(4)
        if head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        stream.seek(0)
        seen = _Seen()
        utf8 = _first_undecodable(stream, "utf-8", seen)
        if utf8 is None:
            both = _both_readings(path) if seen.non_ascii and not seen.wide else None
            if both is not None:
                line, as_utf8, as_cp932 = both
                raise InputError(
                    "these bytes are valid UTF-8 and valid cp932 (Shift_JIS), and the two"
                    f" readings differ: UTF-8 {_excerpt(as_utf8)!r}, cp932 {_excerpt(as_cp932)!r}",
                    path=display_path(path),
                    line=line,
                    hint="say which with --encoding cp932 (a CSV saved by Excel in Japan) or"
                    " --encoding utf-8; a list that send reads must be saved as 'CSV UTF-8'"
                    " (digest-mail subscribers export LIST --encoding cp932 -o FILE writes it)",
                )
            return "utf-8"
        failure = utf8
        # When UTF-8 Japanese came before the bad bytes, the file is broken UTF-8:
        # reading it as cp932 would turn every name into mojibake.
        if not utf8.after_text:
            stream.seek(0)
            sjis = _first_undecodable(stream, "cp932")
            if sjis is None:
                return "cp932"
            failure = max(utf8, sjis, key=lambda f: f.line)
    raise InputError(
        f"neither UTF-8 nor cp932 (Shift_JIS) text: cannot decode byte(s) {failure.bad.hex(' ')}",
        path=display_path(path),
        line=failure.line,
        hint="save the file as 'CSV UTF-8' and check that line",
    )


def _excerpt(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
