"""Property tests: the plain-text wrapper and unsubscribe tokens.

Wrapper: no line wider than the limit unless a URL makes it so (closing punctuation never
hangs past the margin), no line starts with closing punctuation that could have moved
down with the character before it, nothing but whitespace lost, URLs never broken.
Tokens: make/verify round-trips for any list and address; any
one-character change or truncation is rejected.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from digest_mail.audience.unsubscribe import TokenError, make_token, verify_token
from digest_mail.render.plaintext import _NO_START as NO_START
from digest_mail.render.plaintext import URL_RE, display_width, is_url_line, wrap_text

PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HANG = 0

JAPANESE = list(
    "菊花の記事を読むトランプ再選で変わる世界核軍縮同盟北朝鮮私たちの未来はどうなる"
    "、。」『』（）「…ー々っゃ！？・：ｶﾅ①㈱髙～😀"
)
pieces = st.one_of(
    st.text(alphabet=st.sampled_from(JAPANESE), min_size=1, max_size=40),
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30
    ),
    # URLs stand apart (a space or line start before them); glued ones: see below.
    st.sampled_from(
        [
            " https://chrysanthemum-digest.example.jp/articles/trump-reelection?utm=news&x=1 ",
            "\n@@unsubscribe_url@@\n",
            " mailto:editors@example.jp ",
        ]
    ),
    st.sampled_from(
        [
            "💡",
            "✅",
            "🚩 結論!",
        ]
    ),
    st.sampled_from([" ", "  ", "\n", "\n\n", "\t"]),
)
texts = st.lists(pieces, max_size=30).map("".join)


def _non_space(text: str) -> str:
    return "".join(text.split())


@PROPERTY
@given(text=texts, width=st.integers(min_value=20, max_value=100))
@example(text="あ" * 35 + "」。", width=72)
def test_wrapped_lines_fit_and_nothing_is_lost(text: str, width: int) -> None:
    _check_wrap(text, width)


def _check_wrap(text: str, width: int) -> None:
    wrapped = wrap_text(text, width)
    lines = wrapped.split("\n")
    for line in lines:
        if display_width(line) > width + HANG:
            assert is_url_line(line, width=width + HANG), (width, line)
    assert _non_space(wrapped) == _non_space(text)
    for url in URL_RE.findall(text):
        assert any(url in line for line in wrapped.split("\n")), url


@PROPERTY
@given(
    text=st.text(alphabet=st.sampled_from(JAPANESE[:-1]), min_size=1, max_size=300),
    width=st.integers(min_value=10, max_value=100),
)
@example(text="あ" * 35 + "い」。" + "う" * 5, width=72)
def test_closing_punctuation_does_not_start_a_line(text: str, width: int) -> None:
    """In running Japanese (no spaces) punctuation starts a line only after a run of more
    closing punctuation than the wrapper moves down (three), never after a character."""
    lines = wrap_text(text, width).split("\n")
    for line in lines:
        assert display_width(line) <= width, line
    for before, line in itertools.pairwise(lines):
        if line[:1] in NO_START:
            assert all(c in NO_START for c in before[-3:]), (before, line)


@pytest.mark.parametrize("text", ["。" * 200, "あ" * 35 + "」" * 10, "ー" * 100])
def test_runs_of_closing_punctuation_stay_within_the_hang(text: str) -> None:
    _check_wrap(text, 72)


@pytest.mark.parametrize("prefix", ["出典:", "see:", "0"])
def test_a_url_glued_to_text_is_not_broken(prefix: str) -> None:
    _check_wrap(prefix + "https://chrysanthemum-digest.example.jp/articles/trump-2025", 40)


KEY = b"k" * 32
lists = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
    min_size=1,
    max_size=30,
)
addresses = st.emails().map(str)


@PROPERTY
@given(list_name=lists, address=addresses)
@example(list_name="weekly", address="山田@例え.jp")
def test_tokens_round_trip(list_name: str, address: str) -> None:
    token = make_token(KEY, list_name, address)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", token)  # safe in a URL and a mail subject
    assert verify_token(KEY, token) == (list_name, address)
    with pytest.raises(TokenError):
        verify_token(b"x" * 32, token)


TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ %"


@PROPERTY
@given(
    address=addresses,
    position=st.integers(min_value=0, max_value=10_000),
    replacement=st.sampled_from(TOKEN_ALPHABET),
)
def test_any_one_character_change_is_rejected(
    address: str, position: int, replacement: str
) -> None:
    token = make_token(KEY, "weekly", address)
    position %= len(token)
    if token[position] == replacement:
        return
    forged = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(TokenError):
        verify_token(KEY, forged)


@PROPERTY
@given(address=addresses, keep=st.integers(min_value=0, max_value=10_000))
def test_any_truncation_is_rejected(address: str, keep: int) -> None:
    token = make_token(KEY, "weekly", address)
    keep %= len(token)
    with pytest.raises(TokenError):
        verify_token(KEY, token[:keep])


def test_every_single_character_change_of_one_token_is_rejected() -> None:
    """Exhaustive over one real token: every position, every URL-safe character."""
    token = make_token(KEY, "weekly", "hanako@example.jp")
    accepted = []
    for position in range(len(token)):
        for replacement in TOKEN_ALPHABET:
            if replacement == token[position]:
                continue
            forged = token[:position] + replacement + token[position + 1 :]
            try:
                verify_token(KEY, forged)
            except TokenError:
                continue
            accepted.append(forged)
    assert accepted == []
