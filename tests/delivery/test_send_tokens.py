"""The send path's prepared signer issues exactly the tokens of make_token."""

from __future__ import annotations

import pytest

from digest_mail.audience.unsubscribe import TokenError, TokenSigner, make_token, verify_token

KEY = b"test-only-unsubscribe-key-0123456789"


@pytest.mark.parametrize(
    ("list_name", "address"),
    [
        ("weekly", "yamada.taro@example.jp"),
        ("週刊", "鈴木@例え.example.jp"),
        ("weekly", ""),
    ],
)
def test_the_prepared_signer_matches_make_token_and_verifies(list_name: str, address: str) -> None:
    sign = TokenSigner(KEY, list_name)
    # Twice: the keyed state must not be consumed by the first token.
    assert sign(address) == make_token(KEY, list_name, address)
    assert sign(address) == make_token(KEY, list_name, address)
    assert verify_token(KEY, sign(address)) == (list_name, address)


def test_the_prepared_signer_refuses_nul_like_make_token() -> None:
    with pytest.raises(TokenError, match="cannot contain NUL"):
        TokenSigner(KEY, "week\0ly")
    with pytest.raises(TokenError, match="cannot contain NUL"):
        TokenSigner(KEY, "weekly")("a\0b@example.jp")
