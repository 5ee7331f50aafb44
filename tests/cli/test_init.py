"""`digest-mail init DIR`: a new workspace that composes and test-sends out of the box."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
from pathlib import Path

import pytest

from digest_mail.cli.scaffold import packaged_templates
from digest_mail.config import Settings, load_settings
from digest_mail.content.articles import load_article

TEMPLATE_FILES = sorted(
    str(Path(*p.relative_to(Path(str(packaged_templates()))).parts))
    for p in Path(str(packaged_templates())).rglob("*")
    if p.is_file() and "__pycache__" not in p.parts
)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_init_creates_a_workspace(tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("init", "weekly-news", "--staff", "Editor@Example.JP")
    assert result.exit_code == 0, result.output
    today = dt.date.today().isoformat()
    root = tmp_path / "weekly-news"
    expected = sorted(
        [
            ".gitignore",
            "digest-mail.toml",
            f"articles/{today}-welcome.md",
            "subscribers/staff.csv",
            "subscribers/weekly.csv",
            *(f"templates/email/{name}" for name in TEMPLATE_FILES),
        ]
    )
    assert _files(root) == expected
    assert result.output == (
        f"Created weekly-news/ with {len(expected)} files.\n"
        "test-send goes to: Editor@example.jp\n"
        "Next:\n"
        "  cd weekly-news\n"
        "  edit digest-mail.toml: newsletter.from, newsletter.list_id, unsubscribe.base_url,"
        " unsubscribe.mailto are the sample's (example.jp); set your own domain before a real"
        " relay (check warns, send refuses)\n"
        "  digest-mail compose\n"
        "  digest-mail check\n"
        "  digest-mail test-send\n"
    )
    assert (root / "subscribers/staff.csv").read_text(encoding="utf-8") == (
        "email,name\nEditor@example.jp,\n"
    )
    assert (root / "subscribers/weekly.csv").read_text(encoding="utf-8") == (
        "email,name,status,subscribed_at\n"
    )
    assert (root / ".gitignore").read_text().splitlines()[1:] == [
        "drafts/",
        "outbox/",
        "var/",
        "archive/",
    ]
    for name in TEMPLATE_FILES:
        packaged = Path(str(packaged_templates())) / name
        assert (root / "templates/email" / name).read_bytes() == packaged.read_bytes()

    article = load_article(root / f"articles/{today}-welcome.md")
    assert article.published == dt.date.today()
    assert article.title.startswith("ようこそ digest-mail へ")
    assert len(article.points) == 3


def test_init_config_is_valid_and_documents_every_setting(tmp_path: Path, run) -> None:
    assert run("init", str(tmp_path / "news")).exit_code == 0
    config = tmp_path / "news" / "digest-mail.toml"
    settings = load_settings(config, environ={})
    assert settings.smtp.url == "capture"
    assert settings.lists == Settings().lists
    assert settings.archive.base_url == Settings().archive.base_url
    text = config.read_text(encoding="utf-8")
    for secret in ("SMTP_PASSWORD", "SECRET", "DKIM_KEY"):
        assert f"#   DIGEST_MAIL_{secret} " in text
    assert "chmod 600" in text
    # Every setting appears, set or as a commented example, under its own section.
    sections = dict(re.findall(r"^\[(\w+)\]\n(.*?)(?=^#? ?\[|\Z)", text, flags=re.M | re.S))
    for section in dataclasses.fields(Settings):
        if section.name == "schedules":
            assert "# [[schedule]]" in text
            continue
        assert section.name in sections, section.name
        for key in dataclasses.fields(getattr(Settings(), section.name)):
            name = "from" if key.name == "sender" else key.name
            assert re.search(rf"^#? ?{name} = ", sections[section.name], flags=re.M), (
                f"[{section.name}] {name} is not documented in the init config"
            )


def test_init_without_staff_says_where_to_add_it(tmp_path: Path, run) -> None:
    target = tmp_path / "empty-folder"
    target.mkdir()
    result = run("init", str(target))
    assert result.exit_code == 0, result.output
    assert (
        "subscribers/staff.csv has no address yet: add yours (a line 'you@example.jp,名前') "
        "before test-send.\n"
    ) in result.output
    assert (target / "subscribers/staff.csv").read_text(encoding="utf-8") == "email,name\n"


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path, run, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "existing"
    target.mkdir()
    (target / "notes.txt").write_text("大事なメモ\n", encoding="utf-8")
    result = run("init", "existing")
    assert result.exit_code == 1
    assert result.output == (
        "Error: existing is not empty: init never overwrites files\n"
        "Hint: choose a new or empty folder, e.g. 'digest-mail init weekly-news'\n"
    )
    assert _files(target) == ["notes.txt"]
    assert (target / "notes.txt").read_text(encoding="utf-8") == "大事なメモ\n"

    a_file = run("init", "existing/notes.txt")
    assert a_file.exit_code == 1
    assert a_file.output == (
        "Error: existing/notes.txt exists and is not a folder\nHint: choose a new folder name\n"
    )

    monkeypatch.chdir(target)
    here = run("init", ".")
    assert here.exit_code == 1
    assert here.output.startswith(f"Error: {target} is not empty")


def test_init_rejects_a_bad_staff_address_before_writing(tmp_path: Path, run) -> None:
    target = tmp_path / "news"
    result = run("init", str(target), "--staff", "editor@@example.jp")
    assert result.exit_code == 1
    assert result.output.startswith("Error: 'editor@@example.jp' is not a valid address")
    assert not target.exists()


def test_init_then_compose_and_test_send(tmp_path: Path, run) -> None:
    root = tmp_path / "news"
    assert run("init", str(root), "--staff", "editor@example.jp").exit_code == 0
    composed = run("-w", str(root), "compose")
    assert composed.exit_code == 0, composed.output
    drafts = [p for p in (root / "drafts").iterdir() if p.is_dir()]
    assert len(drafts) == 1
    assert (drafts[0] / "index.html").is_file()

    sent = run("-w", str(root), "test-send")
    assert sent.exit_code == 0, sent.output
    captured = [p for p in (root / "outbox").rglob("*") if p.is_file() and p.parent.name == "new"]
    assert len(captured) == 1
    message = email.message_from_bytes(captured[0].read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "editor@example.jp"
    assert "[TEST]" in message["Subject"]
    html_part = message.get_body(preferencelist=("html",))
    assert html_part is not None
    assert "ようこそ digest-mail へ" in html_part.get_content()


def test_the_cd_step_is_quoted_for_a_folder_with_a_space(
    tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("init", "ws space")
    assert result.exit_code == 0, result.output
    assert "\n  cd 'ws space'\n" in result.output
    assert (tmp_path / "ws space" / "digest-mail.toml").is_file()
