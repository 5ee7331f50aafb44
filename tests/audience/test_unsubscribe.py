"""Signed unsubscribe tokens, the signing key, the opt-out and suppressions commands."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from digest_mail.audience.unsubscribe import (
    TokenError,
    make_token,
    signing_key,
    unsubscribe_mailto,
    unsubscribe_url,
    verify_token,
)
from digest_mail.config import find_workspace
from digest_mail.errors import ConfigError
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.suppressions import list_suppressions, suppress

KEY = b"test-key-0123456789abcdef-0123456789"


def test_token_round_trip_with_japanese_list_name() -> None:
    token = make_token(KEY, "週刊", "Hanako@例え.jp")
    assert verify_token(KEY, token) == ("週刊", "Hanako@例え.jp")
    body, signature = token.split(".")
    assert (
        base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)) == "週刊\0Hanako@例え.jp".encode()
    )
    assert len(base64.urlsafe_b64decode(signature + "=")) == 32


@pytest.mark.parametrize(
    ("forge", "message"),
    [
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "bad signature"),
        (lambda t: t[: len(t) - 10], r"damaged \(truncated\)"),
        (lambda t: t[: len(t) - 12], "bad signature"),
        (lambda t: t.split(".")[0], "incomplete"),
        (lambda t: "", "incomplete"),
        (lambda t: t.replace(t[0], "*", 1), "not base64url"),
        (
            lambda t: (
                base64.urlsafe_b64encode(b"weekly\0mallory@example.com").decode().rstrip("=")
                + "."
                + t.split(".")[1]
            ),
            "bad signature",
        ),
        (
            lambda t: make_token(b"another key that is long enough", "weekly", "a@example.jp"),
            "bad signature",
        ),
    ],
)
def test_forged_or_truncated_tokens_are_refused(forge, message: str) -> None:
    token = make_token(KEY, "weekly", "taro@example.jp")
    with pytest.raises(TokenError, match=message):
        verify_token(KEY, forge(token))


def test_links(workspace: Path) -> None:
    settings = find_workspace(workspace).settings
    token = make_token(KEY, "weekly", "taro@example.jp")
    assert unsubscribe_url(settings, token) == (
        f"https://chrysanthemum-digest.example.jp/unsubscribe?t={token}"
    )
    mailto = unsubscribe_mailto(settings, token)
    assert mailto == f"mailto:unsubscribe@example.jp?subject=unsubscribe%20{token}"
    # Both fit one List-Unsubscribe header line with room to spare.
    assert len(f"List-Unsubscribe: <{unsubscribe_url(settings, token)}>, <{mailto}>") < 998


def test_key_from_environment(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIGEST_MAIL_SECRET", "s3cret-from-the-environment")
    assert signing_key(find_workspace(workspace)) == b"s3cret-from-the-environment"
    assert not (workspace / "var" / "unsubscribe.key").exists()
    monkeypatch.setenv("DIGEST_MAIL_SECRET", "short")
    with pytest.raises(ConfigError, match="too short"):
        signing_key(find_workspace(workspace))


def test_generated_key_is_owner_only_and_reused(workspace: Path) -> None:
    ws = find_workspace(workspace)
    first = signing_key(ws)
    path = workspace / "var" / "unsubscribe.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 64 and bytes.fromhex(first.decode())
    assert signing_key(ws) == first
    assert [p.name for p in path.parent.iterdir()] == ["unsubscribe.key"]


def test_configured_key_file_must_be_owner_only(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = workspace / "unsub.key"
    key_file.write_text("a-long-enough-secret-for-hmac\n", encoding="utf-8")
    key_file.chmod(0o644)
    monkeypatch.setenv("DIGEST_MAIL_UNSUBSCRIBE_KEY_FILE", "unsub.key")
    with pytest.raises(ConfigError, match=r"readable by group or others"):
        signing_key(find_workspace(workspace))
    key_file.chmod(0o600)
    assert signing_key(find_workspace(workspace)) == b"a-long-enough-secret-for-hmac"


def test_unsubscribe_command_and_repeat(workspace: Path, run) -> None:
    first = run("unsubscribe", "Suzuki.Hanako@Example.com", "--list", "weekly")
    assert (first.exit_code, first.output) == (
        0,
        "suppressed Suzuki.Hanako@example.com (unsubscribed, source weekly)\n",
    )
    again = run("unsubscribe", "suzuki.hanako@example.com", "--reason", "complained")
    assert again.output.startswith(
        "suzuki.hanako@example.com was already suppressed (unsubscribed since "
    )
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        [row] = list_suppressions(ledger)
    assert (row.address, row.reason, row.source) == (
        "suzuki.hanako@example.com",
        "unsubscribed",
        "weekly",
    )


def test_unsubscribe_by_mailto_token(workspace: Path, run) -> None:
    key = signing_key(find_workspace(workspace))
    token = make_token(key, "weekly", "ito.kenta@example.jp")
    result = run("unsubscribe", "--token", f"unsubscribe {token}")
    assert result.output == "suppressed ito.kenta@example.jp (unsubscribed, source weekly)\n"
    forged = run("unsubscribe", "--token", token[:-4])
    assert (forged.exit_code, forged.output) == (
        1,
        "Error: the unsubscribe link is not valid (bad signature)\n",
    )
    nothing = run("unsubscribe")
    assert (
        nothing.output
        == "Error: give an ADDRESS or --token\nHint: digest-mail unsubscribe ADDRESS\n"
    )


def test_suppressions_list_and_remove(workspace: Path, run) -> None:
    with Ledger(workspace / "var" / "ledger.sqlite3") as ledger:
        suppress(
            ledger,
            "a@example.jp",
            reason="bounced",
            source="b.mbox",
            detail="5.1.1",
            at="2026-11-01T00:00:00+00:00",
        )
        suppress(
            ledger, "b@example.jp", reason="manual", source="cli", at="2026-11-02T00:00:00+00:00"
        )
    listed = run("suppressions", "list")
    assert listed.output == (
        "2026-11-01T00:00:00+00:00  bounced       a@example.jp  (b.mbox: 5.1.1)\n"
        "2026-11-02T00:00:00+00:00  manual        b@example.jp  (cli)\n"
        "2 suppressions\n"
    )
    only = json.loads(run("suppressions", "list", "--reason", "manual", "--json").output)
    assert only == [
        {
            "address": "b@example.jp",
            "reason": "manual",
            "source": "cli",
            "detail": "",
            "created_at": "2026-11-02T00:00:00+00:00",
        }
    ]
    removed = run("suppressions", "remove", "A@example.jp")
    assert removed.output == "removed the suppression of a@example.jp (was bounced)\n"
    missing = run("suppressions", "remove", "a@example.jp")
    assert (missing.exit_code, missing.output) == (
        1,
        "Error: a@example.jp is not suppressed\nHint: see 'digest-mail suppressions list'\n",
    )
