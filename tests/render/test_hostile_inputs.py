"""Hostile articles and settings (tests/corpus/articles, tests/corpus/config).

Each one either stops with one clear ``Error: …`` line naming the file (and line or key)
— exit code 1, no traceback — or is handled safely: HTML in titles is escaped, YAML never
constructs Python objects, a 10 MB body is no problem, and nothing is sent.
"""

from __future__ import annotations

import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import Runner

CORPUS = Path(__file__).parents[1] / "corpus"
ARTICLE_ERRORS = {
    "binary.md": "not UTF-8 text",
    "data-url-image.md": "image: 'data:text/html",
    "http-url.md": "url: 'http://chrysanthemum-digest.example.jp/articles/kyoto' is not an absol",
    "javascript-image.md": "image: 'javascript:alert(1)' is not an absolute https URL",
    "javascript-source.md": "sources[0].url: 'javascript:alert(1)' is not an absolute https URL",
    "javascript-url.md": "url: 'javascript:alert(document.cookie)' is not an absolute https URL",
    "no-front-matter.md": "no front matter",
    "placeholder-image.md": "image: 'https://tracker.example.net/pixel.gif?e=@@email@@&u=@@unsu",
    "python-name.md": "python/name:os.system",
    "python-object.md": "python/object/apply:os.system",
    "unclosed-front-matter.md": "front matter is not closed",
    "yaml-bomb.md": "points[0]: expected a non-empty sentence",
}
SAFE_ARTICLES = {"html-title.md", "newline-title.md"}


def _one_error(output: str, *, starts: str, contains: str) -> None:
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert lines[0].startswith(starts), output
    assert contains in lines[0], output
    assert len(lines) <= 2 and all(line.startswith("Hint: ") for line in lines[1:]), output


def test_the_corpus_is_covered() -> None:
    names = {p.name for p in (CORPUS / "articles").glob("*.md")}
    assert names == set(ARTICLE_ERRORS) | SAFE_ARTICLES


@pytest.mark.parametrize("name", sorted(ARTICLE_ERRORS))
def test_bad_article_is_one_clear_error(workspace: Path, run: Runner, name: str) -> None:
    target = workspace / "articles" / name
    shutil.copy(CORPUS / "articles" / name, target)
    result = run("compose", f"articles/{name}")
    assert result.exit_code == 1
    _one_error(result.output, starts=f"Error: articles/{name}", contains=ARTICLE_ERRORS[name])
    assert not (workspace / "PWNED").exists()
    assert not (workspace / "drafts").exists() or not any((workspace / "drafts").iterdir())


def _hrefs(page: str) -> list[str]:
    found: list[str] = []

    class Links(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.extend(v or "" for k, v in attrs if k in ("href", "src"))

    Links(convert_charrefs=True).feed(page)
    return found


def test_html_and_template_syntax_in_article_fields_are_escaped(
    workspace: Path, run: Runner
) -> None:
    shutil.copy(CORPUS / "articles" / "html-title.md", workspace / "articles" / "x.md")
    result = run("compose", "articles/x.md")
    assert result.exit_code == 0, result.output
    draft = next((workspace / "drafts").iterdir())
    html = (draft / "index.html").read_text(encoding="utf-8")
    assert "<script" not in html
    assert "onerror=" not in html.replace("onerror=alert(1)&gt;", "")  # only as escaped text
    assert "&lt;script&gt;alert(" in html
    assert "<b onmouseover" not in html and "<img src=x" not in html
    # The source title '<a href="javascript:…">' shows as text (&lt;a href="javascript:…"&gt;),
    # never as a link: no element's href is javascript:.
    assert "&lt;a href=" in html
    assert not [h for h in _hrefs(html) if h.lower().lstrip().startswith("javascript:")]
    # Jinja syntax in content is text, never evaluated.
    assert "{{ 7*7 }}" in html and ">49<" not in html
    assert "{{ config }}" in html or "{% raw %}" in html


def test_line_breaks_in_a_title_never_reach_a_header(workspace: Path, run: Runner) -> None:
    shutil.copy(CORPUS / "articles" / "newline-title.md", workspace / "articles" / "x.md")
    result = run("compose", "articles/x.md")
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        draft = next((workspace / "drafts").iterdir())
        preview = (draft / "preview.eml").read_bytes()
        head = re.split(rb"\r?\n\r?\n", preview, maxsplit=1)[0]
        assert not re.search(rb"^Bcc:", head, re.MULTILINE | re.IGNORECASE)


def test_a_ten_megabyte_body_is_handled(workspace: Path, run: Runner) -> None:
    head = (CORPUS / "articles" / "html-title.md").read_text(encoding="utf-8").split("\n---\n")[0]
    head = re.sub(r"title: .*", "title: 巨大な記事", head)
    paragraph = "京都の伝統工芸の工房に、いま他県からの移住者が弟子入りしている。" * 5
    count = 10_000_000 // len((paragraph + "\n\n").encode())
    body = (paragraph + "\n\n") * count
    (workspace / "articles" / "huge.md").write_text(head + "\n---\n\n" + body, encoding="utf-8")
    assert (workspace / "articles" / "huge.md").stat().st_size >= 9_900_000
    result = run("compose", "articles/huge.md")
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        _one_error(result.output, starts="Error: articles/huge.md", contains="")
    else:
        draft = next((workspace / "drafts").iterdir())
        assert (draft / "index.html").stat().st_size < 102_000  # the body is not inlined


CONFIG_ERRORS = {
    "unknown-key.toml": "smtp.pasword_file: unknown key",
    "unknown-section.toml": "[smpt]: unknown section",
    "bad-type.toml": "smtp.concurrency: expected int",
    "not-toml.toml": "not valid TOML",
    "password-in-config.toml": "smtp.password: unknown key",
    "two-from.toml": "newsletter.from: 'Chrysanthemum Digest <digest@example.jp>, Evil",
}
TRANSPORT_ERRORS = {
    "bad-url.toml": "smtp//relay.example.jp:587",
    "ftp-url.toml": "ftp://relay.example.jp",
    "password-in-url.toml": "SMTP URL 'smtps://digest:***@relay.example.jp:465' must not contain",
}


@pytest.mark.parametrize("name", sorted(CONFIG_ERRORS))
def test_bad_settings_are_one_clear_error(workspace: Path, run: Runner, name: str) -> None:
    shutil.copy(CORPUS / "config" / name, workspace / "digest-mail.toml")
    result = run("subscribers", "count", "weekly")
    assert result.exit_code == 1
    _one_error(result.output, starts="Error: ", contains=CONFIG_ERRORS[name])
    assert "digest-mail.toml" in result.output.splitlines()[0]
    assert "hunter2" not in result.output


@pytest.mark.parametrize("name", sorted(TRANSPORT_ERRORS))
def test_bad_relay_urls_stop_before_any_connection(workspace: Path, run: Runner, name: str) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    shutil.copy(CORPUS / "config" / name, workspace / "digest-mail.toml")
    result = run("test-send", env={"DIGEST_MAIL_SMTP_PASSWORD": "marker-password-123"})
    assert result.exit_code == 1
    _one_error(result.output, starts="Error: ", contains=TRANSPORT_ERRORS[name])
    assert "marker-password-123" not in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_secret_files_readable_by_others_are_refused(
    workspace: Path, run: Runner, mode: int
) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    secret = workspace / "smtp-password"
    secret.write_text("marker-password-456\n", encoding="utf-8")
    os.chmod(secret, mode)
    (workspace / "digest-mail.toml").write_text(
        f'[smtp]\nurl = "smtps://digest@127.0.0.1:1"\npassword_file = "{secret}"\n',
        encoding="utf-8",
    )
    result = run("test-send")
    assert result.exit_code == 1
    _one_error(result.output, starts="Error: ", contains="readable by group or others")
    assert f"chmod 600 {secret}" in result.output
    assert "marker-password-456" not in result.output


def test_unsubscribe_key_file_readable_by_others_is_refused(workspace: Path, run: Runner) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    key = workspace / "unsubscribe.key"
    key.write_text("k" * 64 + "\n", encoding="utf-8")
    os.chmod(key, 0o644)
    toml = (workspace / "digest-mail.toml").read_text(encoding="utf-8")
    (workspace / "digest-mail.toml").write_text(
        toml + f'\n[unsubscribe]\nkey_file = "{key}"\n'
        if "[unsubscribe]" not in toml
        else toml.replace("[unsubscribe]", f'[unsubscribe]\nkey_file = "{key}"', 1),
        encoding="utf-8",
    )
    result = run("test-send")
    assert result.exit_code == 1
    _one_error(result.output, starts="Error: ", contains="readable by group or others")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DIGEST_MAIL_NEWSLETTER_SENDER", "Digest <digest@example.jp>\r\nBcc: x@evil.example"),
        ("DIGEST_MAIL_NEWSLETTER_REPLY_TO", "editors@example.jp\nBcc: x@evil.example"),
        ("DIGEST_MAIL_NEWSLETTER_NAME", "Digest\nBcc: x@evil.example"),
        ("DIGEST_MAIL_NEWSLETTER_LIST_ID", "weekly.example.jp>\nBcc: x@evil.example"),
        ("DIGEST_MAIL_UNSUBSCRIBE_MAILTO", "u@example.jp\nBcc: x@evil.example"),
        ("DIGEST_MAIL_UNSUBSCRIBE_BASE_URL", "https://example.jp/u\nBcc: x@evil.example"),
    ],
)
def test_line_breaks_in_header_settings_are_one_clear_error(
    workspace: Path, run: Runner, variable: str, value: str
) -> None:
    result = run("compose", "articles/kyoto-crafts-successors.md", env={variable: value})
    assert result.exit_code == 1, result.output
    _one_error(result.output, starts="Error: ", contains="line break or control character")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_ledger_is_one_clear_error_and_left_alone(
    workspace: Path, run: Runner, damage: str
) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    assert run("send", "--list", "weekly", "--yes").exit_code == 0
    ledger = workspace / "var" / "ledger.sqlite3"
    data = ledger.read_bytes()
    ledger.write_bytes(b"not a ledger\n" * 10 if damage == "garbage" else data[:3000])
    damaged = ledger.read_bytes()
    commands = (["status"], ["send", "--list", "weekly", "--yes"], ["unsubscribe", "a@example.jp"])
    for args in commands:
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        _one_error(result.output, starts="Error: ", contains="cannot open the ledger")
    assert ledger.read_bytes() == damaged  # never "repaired" by overwriting


@pytest.mark.parametrize(
    "subject",
    ["{edition.nope}", "{edition.__class__.__mro__}", "{edition:>99999999}", "{edition!r}", "{0}"],
)
def test_a_subject_template_only_names_the_edition(
    workspace: Path, run: Runner, subject: str
) -> None:
    result = run("compose", "articles/kyoto-crafts-successors.md", "--subject", subject)
    assert result.exit_code == 1
    _one_error(result.output, starts="Error: --subject: ", contains="may only use {edition}")
    assert "<class" not in result.output


def test_hostile_titles_and_subjects_stay_escaped_in_the_public_archive(
    workspace: Path, run: Runner
) -> None:
    import xml.dom.minidom

    shutil.copy(CORPUS / "articles" / "html-title.md", workspace / "articles" / "x.md")
    subject = 'Digest {edition} <script>alert(1)</script> ]]> & "q"'
    assert run("compose", "articles/x.md", "--subject", subject).exit_code == 0
    # Template syntax in article text is a check error ('leftover'): the editor insists.
    sent = run("send", "--list", "weekly", "--yes", "--force")
    assert sent.exit_code == 0, sent.output
    # HTML and Atom are markup; the archive's JSON index is data and keeps the text.
    pages = [p for p in (workspace / "archive").rglob("*") if p.suffix in (".html", ".xml")]
    assert pages, sent.output
    for page in pages:
        text = page.read_text(encoding="utf-8").replace("onerror=alert(1)&gt;", "")
        assert "<script" not in text and "onerror=alert" not in text
        if page.suffix == ".xml":
            xml.dom.minidom.parseString(text.encode())  # well-formed despite ']]>' and '&'
