"""What ``check`` asks outside the draft: SpamAssassin's offline score, image URLs.

Both are optional. SpamAssassin runs only when installed (Debian ``spamassassin``),
offline (``-L``, no Bayes): about 1.2 s. Images are fetched only when asked
(``check --fetch-images``): a check never reaches the network by surprise.
"""

from __future__ import annotations

import errno
import re
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass

from digest_mail.errors import DigestMailError

__all__ = [
    "NetworkUnreachableError",
    "SpamReport",
    "fetch_image",
    "find_spamassassin",
    "run_spamassassin",
    "subject_all_caps",
]

SPAMASSASSIN_ARGS = ("-L", "-t", "-x", "--cf=use_bayes 0")
_RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\b")
_SCORE = re.compile(r"Content analysis details:\s+\((-?\d+(?:\.\d+)?) points")
# SpamAssassin strips these reply prefixes before SUBJ_ALL_CAPS looks (HeaderEval.pm).
_REPLY_PREFIX = re.compile(r"^(?:(?:Re|Fwd|Fw|Aw|Antwort|WG|SV|VB|VS|VL):\s*)+", re.IGNORECASE)


def subject_all_caps(subject: str) -> bool:
    """Whether SpamAssassin's SUBJ_ALL_CAPS (+0.5) fires on ``subject`` sent as UTF-8.

    Its rule (Plugin/HeaderEval.pm ``subject_is_all_caps``): more than one word, at least
    10 characters, and every Latin letter a capital — so "2026-W48 特集号", whose only
    letter is the W of the edition id, fires.
    """
    text = _REPLY_PREFIX.sub("", subject.strip())
    if not re.search(r"\s", text) or len(text) < 10:
        return False
    letters = re.sub(r"[^A-Za-z]", "", text)
    return bool(letters) and letters == letters.upper()


@dataclass(frozen=True)
class SpamReport:
    """SpamAssassin's verdict: the score and each rule that hit with its points."""

    score: float
    rules: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        hits = ", ".join(f"{name} {points:+.1f}" for name, points in self.rules)
        return f"score {self.score:.1f}" + (f" ({hits})" if hits else "")


def find_spamassassin() -> str | None:
    return shutil.which("spamassassin")


def run_spamassassin(message: bytes, *, executable: str, timeout: float = 60.0) -> SpamReport:
    """Score ``message`` offline; :class:`DigestMailError` when SpamAssassin fails."""
    try:
        result = subprocess.run(
            [executable, *SPAMASSASSIN_ARGS],
            input=message,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DigestMailError(f"spamassassin did not run: {exc}") from None
    output = result.stdout.decode("utf-8", "replace")
    score = _SCORE.search(output)
    if score is None:
        detail = (result.stderr.decode("utf-8", "replace").strip().splitlines() or ["no report"])[
            -1
        ]
        raise DigestMailError(f"spamassassin gave no report: {detail}")
    table = output[score.end() :].split("\n---- ", 1)[-1].splitlines()[1:]
    rules = []
    for line in table:
        match = _RULE_LINE.match(line)
        if match:
            rules.append((match.group(2), float(match.group(1))))
    return SpamReport(score=float(score.group(1)), rules=tuple(rules))


class NetworkUnreachableError(DigestMailError):
    """No route or no name resolution: image URLs cannot be judged from here."""


_OFFLINE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN}


def fetch_image(
    url: str, *, timeout: float = 10.0, context: ssl.SSLContext | None = None
) -> str | None:
    """Why ``url`` does not load as an image, or None when it does.

    Raises :class:`NetworkUnreachableError` when the host cannot be resolved or reached
    at all (offline): that says nothing about the URL.
    """
    request = urllib.request.Request(
        url, headers={"User-Agent": "digest-mail check", "Range": "bytes=0-1023"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            kind = response.headers.get_content_type()
            response.read(1024)
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, socket.gaierror) or (
            isinstance(reason, OSError) and reason.errno in _OFFLINE_ERRNOS
        ):
            raise NetworkUnreachableError(f"cannot reach {url}: {reason}") from None
        return str(reason)
    except (OSError, ValueError) as exc:
        return str(exc) or type(exc).__name__
    if not kind.startswith("image/"):
        return f"it is {kind}, not an image"
    return None
