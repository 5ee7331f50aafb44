# ruff: noqa: E501  (exact messages are long lines on purpose)
"""``digest-mail check``: each inbox problem is found, errors exit 1, warnings do not."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Runner, use_own_identity
from digest_mail.config import load_settings
from digest_mail.content.edition import default_edition_id
from digest_mail.review.check import FillValues, longest_values, sent_html

EDITION = default_edition_id(dt.date.today())


@pytest.fixture
def draft(workspace: Path, run: Runner) -> Path:
    # These tests are about the draft; the sample identity's finding has tests of its own.
    use_own_identity(workspace)
    result = run(
        "compose", "articles/heatwave-elderly-care.md", "articles/kyoto-crafts-successors.md"
    )
    assert result.exit_code == 0, result.output
    return workspace / "drafts" / EDITION


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _sent_kb(draft: Path, fill: FillValues | None = None) -> str:
    settings = load_settings(draft.parent.parent / "digest-mail.toml", environ={})
    page = sent_html(
        (draft / "index.html").read_text(encoding="utf-8"),
        settings,
        fill or longest_values(settings),
    )
    return f"{len(page.encode()) / 1024:.1f}"


def test_a_fresh_draft_passes(draft: Path, run: Runner) -> None:
    result = run("check", "--no-spamassassin")
    lines = len((draft / "index.txt").read_text(encoding="utf-8").splitlines())
    assert (result.exit_code, result.output) == (
        0,
        f"{EDITION}: drafts/{EDITION}/\nOK: 0 errors, 0 warnings (HTML {_sent_kb(draft)} KB as sent with upper bounds, text {lines} lines)\n",
    )


def test_the_size_is_measured_with_the_longest_values_not_the_placeholders(
    draft: Path, run: Runner
) -> None:
    placeholders = len((draft / "index.html").read_bytes())
    result = run("check", "--no-spamassassin", "--json")
    bounds = json.loads(result.output)
    assert bounds["measured_with"] == "upper bounds"
    # A 100-kanji name, a 254-octet address and its unsubscribe link: ~1 KB more.
    assert bounds["html_bytes"] - placeholders > 900
    weekly = run("check", "--no-spamassassin", "--list", "weekly", "--json")
    listed = json.loads(weekly.output)
    assert listed["measured_with"] == "list weekly"
    assert placeholders < listed["html_bytes"] < bounds["html_bytes"]


def _html(old: str, new: str) -> Callable[[Path], None]:
    return lambda d: _edit(d / "index.html", old, new)


def _text(old: str, new: str) -> Callable[[Path], None]:
    return lambda d: _edit(d / "index.txt", old, new)


IMAGE_SRC = "https://chrysanthemum-digest.example.jp/images/heatwave-elderly-care.jpg"
ARTICLE_URL = "https://chrysanthemum-digest.example.jp/articles/kyoto-crafts-successors"

ERRORS: list[tuple[str, Callable[[Path], None], str]] = [
    (
        "http link",
        _html(f'href="{ARTICLE_URL}"', 'href="http://chrysanthemum-digest.example.jp/kyoto"'),
        "error: link: index.html:{line}: a href 'http://chrysanthemum-digest.example.jp/kyoto' uses http (use https)",
    ),
    (
        "relative link",
        _html(f'href="{ARTICLE_URL}"', 'href="/articles/kyoto"'),
        "error: link: index.html:{line}: a href '/articles/kyoto' is relative (mail has no base address; use an absolute https URL)",
    ),
    (
        "image without alt",
        _html('alt="日傘をさして夏の商店街を歩く高齢の女性" ', ""),
        f"error: img-alt: index.html:{{line}}: image {IMAGE_SRC} has no alt text",
    ),
    (
        "no unsubscribe link",
        _html('href="@@unsubscribe_url@@"', 'href="https://chrysanthemum-digest.example.jp/"'),
        "error: unsubscribe: index.html has no unsubscribe link (@@unsubscribe_url@@ placeholder)",
    ),
    (
        "unknown placeholder",
        _text("@@greeting@@", "@@first_name@@"),
        "error: placeholder: index.txt has unknown placeholders: @@first_name@@ (known: @@greeting@@, @@name@@, @@email@@, @@unsubscribe_url@@)",
    ),
    (
        "template leftover",
        _text("@@greeting@@", "{{ name }}"),
        "error: leftover: index.txt has unrendered template or MJML code: {{{{ name }}}}",
    ),
    (
        "mjml leftover",
        _html("</body>", "<mj-text>x</mj-text></body>"),
        "error: leftover: index.html has unrendered template or MJML code: <mj-text",
    ),
    (
        "empty text part",
        lambda d: (d / "index.txt").write_text("\n", encoding="utf-8"),
        "error: text-empty: index.txt is empty: spam filters punish HTML-only mail",
    ),
    (
        "over the clip",
        _html("</body>", "<p>" + "あ" * 40000 + "</p></body>"),
        'error: html-size: the HTML is {kb} KB as sent: Gmail clips messages over 102 KB (fewer articles, shorter leads or fewer points; [edition] sources = "links")',
    ),
]


def _line_of(html: str, needle: str) -> int:
    return html[: html.index(needle)].count("\n") + 1


@pytest.mark.parametrize(("case", "damage", "expected"), ERRORS, ids=[e[0] for e in ERRORS])
def test_each_error_is_reported_and_exits_1(
    draft: Path, run: Runner, case: str, damage: Callable[[Path], None], expected: str
) -> None:
    damage(draft)
    html = (draft / "index.html").read_text(encoding="utf-8")
    needle = {
        "http link": 'href="http://',
        "relative link": 'href="/articles',
        "image without alt": "<img ",
    }.get(case)
    line = _line_of(html, needle) if needle else 0
    kb = _sent_kb(draft)
    result = run("check", "--no-spamassassin", EDITION)
    assert result.exit_code == 1
    findings = result.output.splitlines()[1:-1]
    assert "  " + expected.format(line=line, kb=kb) in findings
    assert result.output.splitlines()[-1].startswith("FAILED: ")


def test_warnings_do_not_fail(draft: Path, run: Runner) -> None:
    _edit(draft / "index.txt", "さらに読む ⇒\n", "さらに読む ⇒ " + "長" * 40 + "\n", count=2)
    meta = json.loads((draft / "edition.json").read_text(encoding="utf-8"))
    meta["preheader"] = ""
    (draft / "edition.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    result = run("check", "--no-spamassassin", str(draft))
    lines = result.output.splitlines()
    assert result.exit_code == 0
    widths = [line for line in lines if "text-width" in line]
    assert len(widths) == 2
    assert widths[0].endswith("line is 95 columns (limit 72)")
    assert (
        "  warning: preheader: no preheader: inboxes will show the first words of the body "
        "(compose --preheader or [edition] preheader)"
    ) in lines
    assert lines[-1].startswith("OK: 0 errors, 3 warnings")


def test_url_lines_may_exceed_72_columns(draft: Path, run: Runner) -> None:
    long_url = "https://chrysanthemum-digest.example.jp/articles/" + "x" * 80
    _edit(draft / "index.txt", "さらに読む ⇒\n", f"さらに読む ⇒\n{long_url}\n")
    result = run("check", "--no-spamassassin", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["findings"] == []


def test_json_report(draft: Path, run: Runner) -> None:
    _edit(draft / "index.html", 'href="@@unsubscribe_url@@"', 'href="#"')
    result = run("check", "--no-spamassassin", "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["draft"] == EDITION
    assert report["ok"] is False
    assert report["errors"] == 2 and report["warnings"] == 0
    assert {f["code"] for f in report["findings"]} == {"link", "unsubscribe"}
    assert all(f["level"] == "error" for f in report["findings"])


def test_check_without_drafts_says_to_compose(workspace: Path, run: Runner) -> None:
    result = run("check", "--no-spamassassin")
    assert (result.exit_code, result.output) == (
        1,
        "Error: no drafts in drafts/\nHint: run 'digest-mail compose' first\n",
    )


def test_html_markup_in_the_text_part_is_a_warning(draft: Path, run: Runner) -> None:
    _edit(draft / "index.txt", "さらに読む ⇒", '<a href="#">さらに読む &amp; 続き</a>')
    result = run("check", "--no-spamassassin", "--json")
    assert result.exit_code == 0
    findings = json.loads(result.output)["findings"]
    assert findings == [
        {
            "level": "warning",
            "code": "text-markup",
            "message": 'index.txt shows HTML markup to readers: &amp;, </a>, <a href="#"> '
            "(text templates must not be autoescaped or hold tags)",
        }
    ]
