# ruff: noqa: E501  (exact messages are long lines on purpose)
"""``digest-mail compose`` through the CLI: drafts, preview.eml, and every bad input."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import os
import shutil
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from compose_samples import replace_field, write_article
from conftest import Runner, copy_workspace
from digest_mail.cli import cli
from digest_mail.config import find_workspace, load_settings
from digest_mail.content.edition import default_edition_id
from digest_mail.render.compose import compose
from digest_mail.render.draft import content_hash, latest_draft, load_draft
from digest_mail.review.check import longest_values, sent_html

EDITION = default_edition_id(dt.date.today())
SUBJECT = f"Chrysanthemum Digest {EDITION} 今週の注目記事"


@pytest.fixture(scope="module")
def composed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """The sample workspace composed once for this module (every article, by path)."""
    root = copy_workspace(tmp_path_factory.mktemp("composed") / "ws")
    articles = sorted(str(p) for p in (root / "articles").glob("*.md"))
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DIGEST_MAIL_")}
    result = CliRunner().invoke(
        cli, ["--workspace", str(root), "compose", *articles], env=env, catch_exceptions=False
    )
    return root, result


def _no_draft(workspace: Path) -> bool:
    drafts = workspace / "drafts"
    return not drafts.exists() or list(drafts.iterdir()) == []


def test_compose_prints_the_draft_folder_and_a_summary(composed: tuple[Path, Result]) -> None:
    root, result = composed
    assert result.exit_code == 0, result.output
    folder = root / "drafts" / EDITION
    settings = load_settings(root / "digest-mail.toml", environ={})
    page = (folder / "index.html").read_text(encoding="utf-8")
    html_kb = len(sent_html(page, settings, longest_values(settings)).encode()) / 1024
    assert html_kb * 1024 > len(page.encode()) + 900  # measured as sent, not with @@name@@
    text_lines = len((folder / "index.txt").read_text(encoding="utf-8").splitlines())
    assert result.output == (
        f"{folder}/\n  {SUBJECT}\n  6 articles, HTML {html_kb:.1f} KB as sent, "
        f"text {text_lines} lines\n"
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["index.html", "index.txt", "index.mjml", "edition.json", "preview.eml"]
    )
    assert [p.name for p in (root / "drafts").iterdir()] == [EDITION]  # no staging leftovers


def test_edition_json_describes_the_draft(composed: tuple[Path, Result]) -> None:
    root, _ = composed
    folder = root / "drafts" / EDITION
    meta = json.loads((folder / "edition.json").read_text(encoding="utf-8"))
    html = (folder / "index.html").read_text(encoding="utf-8")
    text = (folder / "index.txt").read_text(encoding="utf-8")
    assert meta["id"] == EDITION
    assert meta["subject"] == SUBJECT
    assert meta["preheader"].startswith("国際・経済・政治")
    assert meta["content_hash"] == content_hash(subject=SUBJECT, html=html, text=text)
    assert [a["category"] for a in meta["articles"]] == [
        "政治",
        "テクノロジー",
        "社会",
        "文化",
        "国際",
        "経済",
    ]
    assert meta["articles"][4] == {
        "title": "トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮…私たちの未来はどうなる?トランプ再選後の世界情勢と日本の安全保障",
        "url": "https://chrysanthemum-digest.example.jp/articles/trump-reelection-world-security",
        "published": "2025-02-20",
        "category": "国際",
        "slug": "trump-reelection-world-security",
    }
    draft = load_draft(find_workspace(root, environ={}), EDITION)
    assert draft.html == html and draft.text == text and draft.content_hash == meta["content_hash"]
    assert load_draft(find_workspace(root, environ={}), str(folder)).id == EDITION
    assert latest_draft(find_workspace(root, environ={})).id == EDITION


def test_preview_eml_parses_into_text_and_html_with_the_subject(
    composed: tuple[Path, Result],
) -> None:
    root, _ = composed
    raw = (root / "drafts" / EDITION / "preview.eml").read_bytes()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == SUBJECT
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0].lower()  # RFC 2047 encoded Japanese subject
    assert message["Date"] and message["Message-ID"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://chrysanthemum-digest.example.jp/unsubscribe" in message["List-Unsubscribe"]
    parts = {part.get_content_type(): part for part in message.iter_parts()}
    assert sorted(parts) == ["text/html", "text/plain"]
    text = parts["text/plain"].get_content()
    html = parts["text/html"].get_content()
    assert parts["text/plain"].get_content_charset() == "utf-8"
    assert "山田 花子 さん、こんにちは。" in text and "山田 花子 さん、こんにちは。" in html
    assert "@@" not in text and "@@" not in html


def test_default_compose_takes_the_last_week_newest_first(workspace: Path, run: Runner) -> None:
    today = dt.date.today()
    for sample in (workspace / "articles").glob("*.md"):
        sample.unlink()  # their dates are fixed; these tests' dates follow the clock
    for slug, days_ago, category in (
        ("old", 30, "経済"),
        ("fresh", 1, "文化"),
        ("recent", 5, "経済"),
    ):
        write_article(
            workspace / "articles",
            slug,
            published=today - dt.timedelta(days=days_ago),
            category=category,
        )
    result = run("compose", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["edition"] == EDITION
    draft = latest_draft(find_workspace(workspace))
    assert [a["slug"] for a in draft.articles] == ["fresh", "recent"]
    assert summary["articles"] == 2 and summary["content_hash"] == draft.content_hash

    result = run("compose", "--since", "7d", "--category", "経済", "--edition", "2026-W99")
    assert result.exit_code == 0, result.output
    assert [a["slug"] for a in load_draft(find_workspace(workspace), "2026-W99").articles] == [
        "recent"
    ]


def test_options_override_subject_intro_preheader(workspace: Path, run: Runner) -> None:
    result = run(
        "compose",
        "articles/kyoto-crafts-successors.md",
        "--edition",
        "2026-W50",
        "--subject",
        "{edition} 特集: 京都の伝統工芸",
        "--intro",
        "今週は特集号です。",
        "--preheader",
        "職人の一年を追いました。",
    )
    assert result.exit_code == 0, result.output
    draft = load_draft(find_workspace(workspace), "2026-W50")
    assert draft.subject == "2026-W50 特集: 京都の伝統工芸"
    assert "今週は特集号です。" in draft.html and "今週は特集号です。" in draft.text
    assert ">職人の一年を追いました。" in draft.html
    assert draft.preheader == "職人の一年を追いました。"


def test_recomposing_replaces_the_draft_folder(workspace: Path, run: Runner) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    stray = workspace / "drafts" / EDITION / "notes.txt"
    stray.write_text("古いメモ", encoding="utf-8")
    assert run("compose", "articles/heatwave-elderly-care.md").exit_code == 0
    assert not stray.exists()
    assert [a["slug"] for a in latest_draft(find_workspace(workspace)).articles] == [
        "heatwave-elderly-care"
    ]
    assert [p.name for p in (workspace / "drafts").iterdir()] == [EDITION]


def test_a_failure_while_writing_keeps_the_previous_draft(
    workspace: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    ws = find_workspace(workspace)
    before = latest_draft(ws)

    def broken(*args: object, **kwargs: object) -> bytes:
        raise OSError("disk full")

    monkeypatch.setattr("digest_mail.render.draft._preview_message", broken)
    with pytest.raises(OSError, match="disk full"):
        compose(ws, ["articles/heatwave-elderly-care.md"])
    assert [p.name for p in (workspace / "drafts").iterdir()] == [EDITION]
    assert latest_draft(ws).content_hash == before.content_hash


BAD_ARTICLES: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "missing title",
        lambda p: replace_field(p, "title:", None),
        "Error: articles/bad.md: title: missing required field\n"
        "Hint: add 'title:' to the front matter between the '---' lines\n",
    ),
    (
        "http url",
        lambda p: replace_field(
            p, "url:", "url: http://chrysanthemum-digest.example.jp/articles/bad"
        ),
        "Error: articles/bad.md:3: url: 'http://chrysanthemum-digest.example.jp/articles/bad' is not an absolute https URL\n"
        "Hint: write the full address, e.g. https://chrysanthemum-digest.example.jp/articles/…\n",
    ),
    (
        "malformed date",
        lambda p: replace_field(p, "published:", "published: 2026-13-01"),
        "Error: articles/bad.md:4: published: '2026-13-01' is not a date like 2025-02-20\n",
    ),
    (
        "broken front matter",
        lambda p: p.write_text("title: 見出し\n", encoding="utf-8"),
        "Error: articles/bad.md:1: no front matter: the first line must be '---'\n"
        "Hint: start the file with a '---' line, the YAML fields, then another '---' line\n",
    ),
]


@pytest.mark.parametrize(
    ("case", "damage", "expected"), BAD_ARTICLES, ids=[c[0] for c in BAD_ARTICLES]
)
def test_each_bad_article_gives_one_line_and_no_draft(
    workspace: Path, run: Runner, case: str, damage: Callable[[Path], None], expected: str
) -> None:
    bad = write_article(workspace / "articles", "bad")
    damage(bad)
    result = run("compose", "articles/kyoto-crafts-successors.md", "articles/bad.md")
    assert (result.exit_code, result.output) == (1, expected)
    assert _no_draft(workspace)


ARTICLE_PARTIAL = "templates/email/partials/article.mjml.j2"
BAD_TEMPLATES: list[tuple[str, str, str, str]] = [
    (
        "unknown variable",
        ARTICLE_PARTIAL,
        "<mj-section>\n  <mj-column>\n    <mj-text>{{ article.subtitle }}</mj-text>\n  </mj-column>\n</mj-section>\n",
        f"Error: {ARTICLE_PARTIAL}:3: template error: 'digest_mail.content.articles.Article object' has no attribute 'subtitle'\n"
        "Hint: fix the template, or delete the override in templates/email/ to use the default\n",
    ),
    (
        "syntax error",
        ARTICLE_PARTIAL,
        "<mj-section>\n  {% if %}\n  <mj-column></mj-column>\n  {% endif %}\n</mj-section>\n",
        f"Error: {ARTICLE_PARTIAL}:2: template syntax error: Expected an expression, got 'end of statement block'\n"
        "Hint: fix the template, or delete the override in templates/email/ to use the default\n",
    ),
    (
        "MJML that does not compile",
        ARTICLE_PARTIAL,
        "<mj-section>\n  <mj-column>\n    <mj-text>{{ article.title }}</mj-column>\n</mj-section>\n",
        "Error: templates/email/digest.mjml.j2: MJML does not compile: unexpected end of stream in root template\n"
        "Hint: check the tags the template writes\n",
    ),
    (
        "unknown MJML tag",
        ARTICLE_PARTIAL,
        "<mj-section>\n  <mj-column>\n    <mj-textbox>{{ article.title }}</mj-textbox>\n  </mj-column>\n</mj-section>\n",
        "Error: templates/email/digest.mjml.j2: MJML left <mj-textbox> in the HTML (unknown or misplaced tag)\n"
        "Hint: use only MJML components mjml-python supports\n",
    ),
    (
        "unknown variable in the text template",
        "templates/email/digest.txt.j2",
        "{{ newsletter.name }}\n{{ edition.title }}\n",
        "Error: templates/email/digest.txt.j2:2: template error: 'digest_mail.content.edition.Edition object' has no attribute 'title'\n"
        "Hint: fix the template, or delete the override in templates/email/ to use the default\n",
    ),
]


@pytest.mark.parametrize(
    ("case", "template", "source", "expected"), BAD_TEMPLATES, ids=[c[0] for c in BAD_TEMPLATES]
)
def test_each_bad_template_names_file_and_line_and_leaves_no_draft(
    workspace: Path, run: Runner, case: str, template: str, source: str, expected: str
) -> None:
    (workspace / template).write_text(source, encoding="utf-8")
    result = run("compose", "articles/kyoto-crafts-successors.md")
    assert (result.exit_code, result.output) == (1, expected)
    assert _no_draft(workspace)


def test_an_empty_selection_says_how_to_widen_it(workspace: Path, run: Runner) -> None:
    result = run("compose", "--since", "1d", "--category", "経済")
    assert (result.exit_code, result.output) == (
        1,
        "Error: no articles selected: none in articles/ published in the last 1d and in category '経済'\n"
        "Hint: name article files (compose articles/*.md) or widen --since, e.g. --since 30d\n",
    )
    assert _no_draft(workspace)


def test_bad_options_are_one_line(workspace: Path, run: Runner) -> None:
    result = run("compose", "articles/kyoto-crafts-successors.md", "--edition", "../escape")
    assert (result.exit_code, result.output.splitlines()[0]) == (
        1,
        "Error: --edition: '../escape' is not an edition id",
    )
    result = run("compose", "articles/kyoto-crafts-successors.md", "--since", "yesterday")
    assert (result.exit_code, result.output.splitlines()[0]) == (
        1,
        "Error: --since: 'yesterday' is not a duration like 90s, 15m, 6h, 7d or 2w",
    )
    result = run("compose", "articles/missing.md")
    assert (result.exit_code, result.output) == (
        1,
        "Error: articles/missing.md: no such article file\n",
    )
    result = run("compose", "articles/kyoto-crafts-successors.md", "--subject", "{issue} 号")
    assert result.exit_code == 1
    assert (
        result.output.splitlines()[0]
        == "Error: --subject: subject '{issue} 号' may only use {edition}"
    )
    assert _no_draft(workspace)


def test_packaged_templates_work_without_workspace_templates(workspace: Path, run: Runner) -> None:
    shutil.rmtree(workspace / "templates")
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    assert "京都の伝統工芸" in latest_draft(find_workspace(workspace)).html


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("spamassassin"), reason="spamassassin is not installed")
def test_spamassassin_does_not_flag_the_preview_message(composed: tuple[Path, Result]) -> None:
    import subprocess

    root, _ = composed
    report = subprocess.run(
        ["spamassassin", "-L", "-t", "-x", "--cf=use_bayes 0"],
        input=(root / "drafts" / EDITION / "preview.eml").read_bytes(),
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout.decode("utf-8", "replace")
    details = report[report.index("Content analysis details") :]
    assert "HTML_FONT_LOW_CONTRAST" not in details
    assert "MIME_HTML_ONLY" not in details
    score = float(details.split("(", 1)[1].split(" points", 1)[0])
    assert score < 1.0, details


def test_unknown_drafts_are_named_with_the_ones_that_exist(workspace: Path, run: Runner) -> None:
    assert (
        run("compose", "articles/kyoto-crafts-successors.md", "--edition", "2026-W47").exit_code
        == 0
    )
    result = run("check", "2026-W49")
    assert (result.exit_code, result.output) == (
        1,
        "Error: no draft 2026-W49 in drafts/ (drafts: 2026-W47)\n"
        "Hint: run 'digest-mail compose --edition 2026-W49' first\n",
    )
    result = run("check", "drafts/nowhere")
    assert (result.exit_code, result.output) == (
        1,
        "Error: no draft folder drafts/nowhere\nHint: run 'digest-mail compose' first\n",
    )
    (workspace / "drafts" / "2026-W47" / "index.txt").unlink()
    result = run("check", "2026-W47")
    assert (result.exit_code, result.output) == (
        1,
        "Error: drafts/2026-W47 is not a complete draft (index.txt is missing)\n"
        "Hint: compose it again: digest-mail compose --edition 2026-W47\n",
    )


def test_compose_warns_when_the_html_would_be_clipped(workspace: Path, run: Runner) -> None:
    result = run("compose", "articles/kyoto-crafts-successors.md", "--intro", "あ" * 40000)
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == (
        "  warning: the HTML is over Gmail's 102 KB clip; see 'digest-mail check'"
    )
    assert run("check").exit_code == 1
