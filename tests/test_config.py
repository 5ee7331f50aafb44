from __future__ import annotations

import os
from pathlib import Path

import pytest

from digest_mail.config import load_settings, parse_duration, read_secret
from digest_mail.errors import ConfigError


def test_defaults_without_a_file() -> None:
    settings = load_settings(None, environ={})
    assert settings.smtp.url == "capture"
    assert settings.lists.staff == "staff"


def test_file_and_environment_override(tmp_path: Path) -> None:
    path = tmp_path / "digest-mail.toml"
    path.write_text(
        '[newsletter]\nfrom = "編集部 <a@example.jp>"\n'
        '[smtp]\nurl = "smtp://relay.example.jp:587"\nconcurrency = 4\n',
        encoding="utf-8",
    )
    settings = load_settings(
        path, environ={"DIGEST_MAIL_SMTP_URL": "capture", "DIGEST_MAIL_SMTP_CONCURRENCY": "2"}
    )
    assert settings.newsletter.sender == "編集部 <a@example.jp>"
    assert settings.smtp.url == "capture"
    assert settings.smtp.concurrency == 2


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "digest-mail.toml"
    path.write_text("[smtp]\nurll = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"digest-mail.toml: smtp.urll: unknown key"):
        load_settings(path, environ={})


def test_bad_type_and_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "digest-mail.toml"
    path.write_text("[smtp]\nconcurrency = 'many'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"smtp.concurrency: expected int, got 'many'"):
        load_settings(path, environ={})
    path.write_text("[smtp\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, environ={})


def test_schedule_validation_names_the_schedule(tmp_path: Path) -> None:
    path = tmp_path / "digest-mail.toml"
    path.write_text('[[schedule]]\nname = "weekly"\nlist = "weekly"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"schedule 'weekly': missing cron"):
        load_settings(path, environ={})


def test_secret_file_must_be_owner_only(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("s3cret\n", encoding="utf-8")
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match="readable by group or others"):
        read_secret(variable="X_SECRET", file=secret, what="signing key", environ={})
    os.chmod(secret, 0o600)
    assert read_secret(variable="X_SECRET", file=secret, what="signing key", environ={}) == "s3cret"
    assert (
        read_secret(variable="X_SECRET", file=secret, what="k", environ={"X_SECRET": "env"})
        == "env"
    )


def test_parse_duration() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("90s") == 90
    with pytest.raises(ConfigError):
        parse_duration("soon")
