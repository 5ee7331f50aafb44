"""Issue 14 items 1, 11 and 13, issue 15 item 10, issue 16's test List-Id: through the CLI.

The builders' own properties are in test_properties_headers.py; here every place a
header value comes from (``--subject``, a setting, an environment variable, a list
file's name, a CSV row) is attacked and must end in one clear line naming that place.
"""

from __future__ import annotations

import os
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from conftest import Runner
from digest_mail.config import find_workspace, read_secret
from digest_mail.errors import ConfigError
from header_limits import check_limits

ARTICLE = "articles/kyoto-crafts-successors.md"
# The attack of issue 14 item 1, as the reviewer typed it.
INJECTED = "=?utf-8?q?x=0D=0ABcc: victim@evil.example=0D=0AReply-To: attacker@evil.example?= end"


def test_an_encoded_word_in_the_subject_option_is_refused(workspace: Path, run: Runner) -> None:
    result = run("compose", ARTICLE, "--subject", f"Weekly {{edition}} {INJECTED}")
    assert result.exit_code == 1
    assert result.output == (
        f"Error: --subject: subject 'Weekly {{edition}} {INJECTED}' holds RFC 2047 "
        "encoded-word syntax (=?charset?q?…?=)\n"
        "Hint: write the subject as plain text: digest-mail encodes headers itself\n"
    )
    assert not (workspace / "drafts").exists() or not any((workspace / "drafts").iterdir())


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DIGEST_MAIL_NEWSLETTER_NAME", f"Digest {INJECTED}"),
        ("DIGEST_MAIL_NEWSLETTER_FROM", f"{INJECTED} <digest@example.jp>"),
        ("DIGEST_MAIL_EDITION_SUBJECT", f"{{edition}} {INJECTED}"),
        ("DIGEST_MAIL_LISTS_STAFF", INJECTED),
    ],
)
def test_an_encoded_word_in_a_header_setting_names_its_variable(
    workspace: Path, run: Runner, variable: str, value: str
) -> None:
    result = run("compose", ARTICLE, env={variable: value})
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {variable}: {value!r} holds RFC 2047 encoded-word syntax (=?charset?q?…?=)\n"
        "Hint: write it as plain text: digest-mail encodes headers itself\n"
    )


def test_an_encoded_word_in_the_settings_file_names_file_and_key(
    workspace: Path, run: Runner
) -> None:
    toml = workspace / "digest-mail.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(re.sub(r"(?m)^name = .*$", f"name = '{INJECTED}'", text, count=1))
    result = run("compose", ARTICLE)
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == (
        f"Error: {toml}: newsletter.name: '{INJECTED}' holds RFC 2047 encoded-word syntax "
        "(=?charset?q?…?=)"
    )


def test_a_list_file_named_like_an_encoded_word_is_not_a_list(workspace: Path, run: Runner) -> None:
    name = "=?utf-8?q?weekly=0D=0ABcc: x@evil.example?="
    (workspace / "subscribers" / f"{name}.csv").write_text(
        "email,name\nhanako@example.jp,花子\n", encoding="utf-8"
    )
    assert run("compose", ARTICLE).exit_code == 0
    for args in (["send", "--list", name, "--yes"], ["subscribers", "check", name]):
        result = run(*args)
        assert result.exit_code == 1, args
        assert result.output == (
            f"Error: {name!r} is not a list name (a file stem under subscribers/)\n"
        ), args
    assert not (workspace / "outbox").exists()


def test_encoded_words_with_spaces_and_overlong_names_are_problem_rows(
    workspace: Path, run: Runner
) -> None:
    long_name = "菊" * 1500
    (workspace / "subscribers" / "odd.csv").write_text(
        "email,name\n"
        f"sato@example.jp,{INJECTED}\n"
        f"suzuki@example.jp,{long_name}\n"
        f"ito@example.jp,{'菊' * 200}\n",
        encoding="utf-8",
    )
    result = run("subscribers", "check", "odd")
    assert result.exit_code == 1
    assert result.output.splitlines()[:2] == [
        f"subscribers/odd.csv:2: name: {INJECTED!r} is an RFC 2047 encoded word, which a "
        "mail header would decode; write the name as plain text",
        "subscribers/odd.csv:3: name: 1500 characters long (at most 200)",
    ]
    assert "odd.csv:4" not in result.output  # 200 is still a name
    assert run("compose", ARTICLE).exit_code == 0
    sent = run("send", "--list", "odd", "--yes")
    assert "1 sent" in sent.output or "sent 1" in sent.output, sent.output
    files = list((workspace / "outbox" / "new").iterdir())
    assert len(files) == 1
    msg = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["To"].addresses[0].addr_spec == "ito@example.jp"
    check_limits(files[0].read_bytes())


def test_a_test_send_carries_a_test_list_id(workspace: Path, run: Runner) -> None:
    """Issue 16: test sends carried the weekly List-Id, so they looked like list mail."""
    assert run("compose", ARTICLE).exit_code == 0
    assert run("test-send").exit_code == 0
    tests = [p.read_bytes() for p in (workspace / "outbox" / "new").iterdir()]
    assert tests
    for data in tests:
        msg = message_from_bytes(data, policy=policy.default)
        assert msg["List-Id"] == (
            "Chrysanthemum Digest test <test.weekly.chrysanthemum-digest.example.jp>"
        )
        assert str(msg["Subject"]).startswith("[TEST] ")
    for path in (workspace / "outbox" / "new").iterdir():
        path.unlink()
    assert run("send", "--list", "weekly", "--yes").exit_code == 0
    weekly = [p.read_bytes() for p in (workspace / "outbox" / "new").iterdir()]
    assert weekly
    for data in weekly:
        msg = message_from_bytes(data, policy=policy.default)
        assert msg["List-Id"] == ("Chrysanthemum Digest <weekly.chrysanthemum-digest.example.jp>")


def test_a_misspelt_variable_warns_with_a_suggestion(workspace: Path, run: Runner) -> None:
    """Issue 14 item 13: DIGEST_MAIL_SMPT_URL was silently ignored (mail captured)."""
    result = run(
        "subscribers",
        "count",
        "weekly",
        env={"DIGEST_MAIL_SMPT_URL": "smtp://relay.example.jp:587", "DIGEST_MAIL_SMTP_UR": "x"},
    )
    assert result.exit_code == 0
    warnings = [line for line in result.output.splitlines() if "DIGEST_MAIL_" in line]
    assert warnings == [
        "Warning: DIGEST_MAIL_SMPT_URL is not a digest-mail setting and is ignored; "
        "did you mean DIGEST_MAIL_SMTP_URL?",
        "Warning: DIGEST_MAIL_SMTP_UR is not a digest-mail setting and is ignored; "
        "did you mean DIGEST_MAIL_SMTP_URL?",
    ]


def test_known_variables_do_not_warn(workspace: Path, run: Runner) -> None:
    env = {
        "DIGEST_MAIL_SMTP_URL": "capture",
        "DIGEST_MAIL_NEWSLETTER_FROM": "Digest <digest@example.jp>",
        "DIGEST_MAIL_SECRET": "test-secret-0123456789abcdef",
        "DIGEST_MAIL_SMTP_PASSWORD": "x",
    }
    result = run("subscribers", "count", "weekly", env=env)
    assert result.exit_code == 0
    assert "Warning" not in result.output


def test_a_bad_value_from_the_environment_names_the_variable(workspace: Path, run: Runner) -> None:
    """Issue 15 item 10: DIGEST_MAIL_SMTP_CONCURRENCY=abc was blamed on digest-mail.toml."""
    result = run("subscribers", "count", "weekly", env={"DIGEST_MAIL_SMTP_CONCURRENCY": "abc"})
    assert result.exit_code == 1
    assert result.output == "Error: DIGEST_MAIL_SMTP_CONCURRENCY: expected int, got 'abc'\n"
    # The variable wins over the file, and the file's own spelling does not matter.
    toml = workspace / "digest-mail.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8") + "\n[smtp]\nconcurrency = 3\n"
        if "[smtp]" not in toml.read_text(encoding="utf-8")
        else toml.read_text(encoding="utf-8").replace("[smtp]", "[smtp]\nconcurrency = 3", 1),
        encoding="utf-8",
    )
    ws = find_workspace(workspace, environ={"DIGEST_MAIL_SMTP_CONCURRENCY": "5"})
    assert ws.settings.smtp.concurrency == 5
    assert find_workspace(workspace, environ={}).settings.smtp.concurrency == 3


def test_a_secret_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """Issue 14 item 13: a 0600 file that someone else owns can be read or replaced by
    them; mode bits alone said it was safe."""
    secret = tmp_path / "key"
    secret.write_text("s3cret-from-someone-else\n", encoding="utf-8")
    os.chmod(secret, 0o600)
    if os.geteuid() != 0:
        pytest.skip("making a file another user owns needs root (CI runs as root)")
    os.chown(secret, 65534, 65534)  # nobody
    with pytest.raises(ConfigError) as info:
        read_secret(variable="X_SECRET", file=secret, what="DKIM key", environ={})
    assert str(info.value) == f"DKIM key file {secret} is owned by another user (uid 65534)"
    assert info.value.hint == f"make it yours: 'chown 0 {secret}' and 'chmod 600 {secret}'"
    assert "s3cret" not in str(info.value)
    os.chown(secret, 0, 0)
    assert read_secret(variable="X_SECRET", file=secret, what="k", environ={}) == (
        "s3cret-from-someone-else"
    )


def test_subscribers_add_takes_the_same_rule_for_names(workspace: Path, run: Runner) -> None:
    before = (workspace / "subscribers" / "weekly.csv").read_bytes()
    injected = run("subscribers", "add", "weekly", "new@example.jp", "--name", INJECTED)
    assert injected.exit_code == 1
    assert injected.output == (
        f"Error: name: {INJECTED!r} is an RFC 2047 encoded word, which a mail header would "
        "decode; write the name as plain text\n"
    )
    long = run("subscribers", "add", "weekly", "new@example.jp", "--name", "菊" * 201)
    assert long.exit_code == 1
    assert long.output == "Error: name: 201 characters long (at most 200)\n"
    assert (workspace / "subscribers" / "weekly.csv").read_bytes() == before
    assert (
        run("subscribers", "add", "weekly", "new@example.jp", "--name", "菊" * 200).exit_code == 0
    )
