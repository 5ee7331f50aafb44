"""What text from outside may hold: the checks every place that takes a name applies.

A subscriber's name, a list name and the newsletter's settings all end up in mail
headers, but they are refused where they come in (the list reader, the settings), long
before a header is built. So the rules live here, below both: the settings and the lists
use them without loading the header writer, and ``mail/headers.py`` applies the same
ones when it writes.
"""

from __future__ import annotations

import re

__all__ = ["CONTROL", "ENCODED_WORD", "MAX_NAME", "looks_like_encoded_word"]

# C0 controls, DEL, C1 controls, the Unicode line/paragraph separators (any of them could
# end a line or confuse a parser) and lone surrogates (no UTF-8 form).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# RFC 2047 syntax as leniently as the parsers that decode it: spaces inside included.
ENCODED_WORD = re.compile(r"=\?[^?]*\?[bq]\?[^?]*\?=", re.IGNORECASE)
# Names longer than this are refused by the list loader: nobody is called that, and
# such a name is an attack on line limits or a column mix-up.
MAX_NAME = 200


def looks_like_encoded_word(value: str) -> bool:
    """True if ``value`` holds RFC 2047 encoded-word syntax (what input checks refuse)."""
    return ENCODED_WORD.search(value) is not None
