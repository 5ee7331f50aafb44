"""The per-reader placeholders: their tokens, what fills them, and the one filler.

A draft is rendered once with a token (``@@name@@``) where each reader's own value
goes; :data:`PLACEHOLDERS` is the table the renderer writes them from. Here is what
each token shows, for every kind of reader a body is filled for:

- a real reader (:func:`placeholder_values`, :func:`fill_values`): the send path's
  values, the text part's as they are and the HTML part's escaped;
- the sample reader (:data:`SAMPLE_RECIPIENT`, :func:`sample_values`): ``preview.eml``,
  the screenshots, the live preview without a list, ``check``'s SpamAssassin message;
- nobody (:func:`neutral_values`): the public archive page, which must hold no one's
  address.

:func:`fill` is the one place a body is filled from such values. The send path does
not call it per reader: :class:`digest_mail.mail.message.MessageTemplate` splits each
body at the tokens once per edition and splices the values of
:func:`placeholder_values` in per reader.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

from digest_mail.config import Settings

__all__ = [
    "PLACEHOLDERS",
    "SAMPLE_RECIPIENT",
    "TOKENS",
    "fill",
    "fill_values",
    "neutral_values",
    "placeholder_values",
    "sample_unsubscribe_url",
    "sample_values",
]

PLACEHOLDERS: dict[str, str] = {
    # "山田 花子 さん", or [edition] greeting_fallback (「読者の皆さま」) for a nameless
    # reader: the honorific belongs to the name, so it is part of the per-reader value.
    "greeting": "@@greeting@@",
    "name": "@@name@@",
    "email": "@@email@@",
    "unsubscribe_url": "@@unsubscribe_url@@",
}
# Any one of the tokens: where a body is split to be spliced per reader.
TOKENS = re.compile("|".join(re.escape(token) for token in PLACEHOLDERS.values()))
SAMPLE_RECIPIENT = ("yamada.hanako@example.jp", "山田 花子")


def placeholder_values(
    settings: Settings, to_address: str, to_name: str, unsubscribe_url: str
) -> tuple[tuple[str, str], ...]:
    """(token, value) for each placeholder of one recipient, as the text part shows it."""
    fallback = settings.edition.greeting_fallback
    return (
        (PLACEHOLDERS["greeting"], f"{to_name} さん" if to_name else fallback),
        (PLACEHOLDERS["name"], to_name or fallback),
        (PLACEHOLDERS["email"], to_address),
        (PLACEHOLDERS["unsubscribe_url"], unsubscribe_url),
    )


def fill_values(
    *, settings: Settings, to_address: str, to_name: str, unsubscribe_url: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Placeholder token -> (text value, HTML value) for one recipient."""
    pairs = placeholder_values(settings, to_address, to_name, unsubscribe_url)
    text = dict(pairs)
    markup = {token: html.escape(value, quote=True) for token, value in pairs}
    return text, markup


def sample_unsubscribe_url(settings: Settings) -> str:
    """The sample reader's unsubscribe link: the page's address with a token that is none."""
    return f"{settings.unsubscribe.base_url.rstrip('/')}?token=preview"


def sample_values(settings: Settings) -> dict[str, str]:
    """What the placeholders show in a preview: the sample reader, HTML-escaped."""
    address, name = SAMPLE_RECIPIENT
    _, markup = fill_values(
        settings=settings,
        to_address=address,
        to_name=name,
        unsubscribe_url=sample_unsubscribe_url(settings),
    )
    return markup


def neutral_values(settings: Settings) -> dict[str, str]:
    """What the placeholders show on the public archive page, HTML-escaped: the greeting
    fallback for the name, a phrase for the address, the subscription page (or ``#``)
    for the link."""
    neutral = {
        "greeting": settings.edition.greeting_fallback,
        "name": settings.edition.greeting_fallback,
        # The footer says "このメールは {email} 宛にお送りしています": keep it a sentence.
        "email": "ご登録のメールアドレス",
        "unsubscribe_url": settings.archive.subscribe_url.strip() or "#",
    }
    return {token: html.escape(neutral[key], quote=True) for key, token in PLACEHOLDERS.items()}


def fill(body: str, values: Mapping[str, str]) -> str:
    """``body`` with each token of ``values`` replaced by its value, one token after the
    other in the order of ``values``."""
    for token, value in values.items():
        body = body.replace(token, value)
    return body
