"""The rendered edition: real Jinja2, mjml-python and premailer, rendered once per module."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path

import pytest

from compose_samples import write_budget_articles
from conftest import REPO
from digest_mail.config import load_settings
from digest_mail.content.articles import Article, load_articles
from digest_mail.content.edition import build_edition
from digest_mail.mail.placeholders import PLACEHOLDERS
from digest_mail.render.plaintext import display_width, is_url_line
from digest_mail.render.renderer import RenderedEdition, inline_css, mjml_to_html, render_edition
from digest_mail.review.check import longest_values, sent_html

SETTINGS = load_settings(REPO / "digest-mail.toml", environ={})
ARTICLES = load_articles(sorted((REPO / "articles").glob("*.md")))
TODAY = dt.date(2026, 11, 25)


def _render(articles: list[Article], templates_dir: Path | None = None) -> RenderedEdition:
    edition = build_edition(articles, settings=SETTINGS, today=TODAY)
    return render_edition(edition, settings=SETTINGS, templates_dir=templates_dir)


@pytest.fixture(scope="module")
def rendered() -> RenderedEdition:
    return _render(ARTICLES, REPO / "templates" / "email")


def _head(page: str) -> str:
    return page[: page.index("</head>")]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_doctype_and_japanese_language_are_kept(rendered: RenderedEdition) -> None:
    assert rendered.html.startswith("<!doctype html>")
    assert '<html lang="ja"' in rendered.html
    assert '<mjml lang="ja">' in rendered.mjml
    assert "<mj-" not in rendered.html


def test_media_queries_stay_in_head_for_phones_and_dark_mode(rendered: RenderedEdition) -> None:
    head = _head(rendered.html)
    assert "@media only screen and (max-width: 480px)" in head
    assert "@media (prefers-color-scheme: dark)" in head
    assert '<meta name="color-scheme" content="light dark">' in head
    assert "@media" not in rendered.html[len(head) :]


def test_content_elements_carry_inline_styles(rendered: RenderedEdition) -> None:
    for css_class in ("title", "lead", "meta", "cat", "src", "chk", "concl", "pt", "footer"):
        tags = re.findall(rf'<[a-z0-9]+ class="{css_class}"[^>]*>', rendered.html)
        assert tags, css_class
        assert all('style="' in tag for tag in tags), css_class
    assert re.search(r'<h2 class="title" style="[^"]*font-size:19px', rendered.html)


def test_no_remote_fonts_and_image_sizes_survive_premailer(rendered: RenderedEdition) -> None:
    assert "fonts.googleapis" not in rendered.html
    assert "@import" not in rendered.html
    image = re.search(r"<img [^>]*>", rendered.html)
    assert image is not None
    assert 'width="552"' in image.group()
    assert 'alt="日傘をさして夏の商店街を歩く高齢の女性"' in image.group()


def test_every_article_title_and_link_is_in_both_parts(rendered: RenderedEdition) -> None:
    text = _squash(rendered.text)
    for article in ARTICLES:
        assert html.escape(article.title, quote=False) in rendered.html
        assert f'href="{article.url}"' in rendered.html
        assert _squash(article.title) in text
        assert article.url in rendered.text.splitlines()


def test_cards_show_category_date_sources_conclusion_and_button(rendered: RenderedEdition) -> None:
    assert '<span class="cat"' in rendered.html
    assert "2025年2月20日" in rendered.html and "2025年2月20日" in rendered.text
    # さらに読む ⇒ goes to each source; the button 記事を読む ⇒ to the article.
    sources = sum(len(a.sources) for a in ARTICLES)
    assert rendered.html.count("さらに読む ⇒") == sources
    assert rendered.text.count("さらに読む ⇒") == sources
    assert rendered.html.count("記事を読む ⇒") == len(ARTICLES)
    assert rendered.text.count("記事を読む ⇒") == len(ARTICLES)
    # The article without points has no 🚩 結論! block: one fewer than the articles.
    assert rendered.html.count("🚩 結論!") == len(ARTICLES) - 1
    assert rendered.text.count("🚩 結論!") == len(ARTICLES) - 1
    assert "💡 トランプ氏の再選は、米国の外交政策を大きく変え" in rendered.html


def test_masthead_greeting_and_footer(rendered: RenderedEdition) -> None:
    assert "Chrysanthemum Digest</a></p>" in rendered.html
    assert "@@greeting@@、こんにちは。" in rendered.html
    assert "@@greeting@@、こんにちは。" in rendered.text
    assert SETTINGS.newsletter.why in rendered.html
    assert 'href="https://chrysanthemum-digest.example.jp/newsletter/2026-W48/"' in rendered.html
    assert (
        "https://chrysanthemum-digest.example.jp/newsletter/2026-W48/" in rendered.text.splitlines()
    )
    assert 'href="mailto:editors@example.jp"' in rendered.html


# The bare name is for workspace templates; the default ones greet with @@greeting@@.
@pytest.mark.parametrize("name", sorted(set(PLACEHOLDERS) - {"name"}))
def test_each_placeholder_survives_into_html_and_text(rendered: RenderedEdition, name: str) -> None:
    token = PLACEHOLDERS[name]
    assert token in rendered.html
    assert token in rendered.text
    assert "%40%40" not in rendered.html  # premailer did not URL-quote a token
    if name == "unsubscribe_url":
        assert f'href="{token}"' in rendered.html
        assert token in rendered.text.splitlines()


def test_preheader_is_hidden_without_low_contrast_colours(rendered: RenderedEdition) -> None:
    match = re.search(r'<div class="preheader" style="([^"]*)">([^<]*)</div>', rendered.html)
    assert match is not None
    style, content = match.groups()
    assert "display:none" in style.replace(" ", "")
    assert "color" not in style  # white-on-white fires SpamAssassin's HTML_FONT_LOW_CONTRAST
    assert content.startswith(SETTINGS.edition.preheader)
    assert "color:#ffffff;line-height:1px" not in rendered.html  # no mj-preview div either


def test_text_lines_fit_72_columns_except_urls(rendered: RenderedEdition) -> None:
    too_wide = [
        line
        for line in rendered.text.splitlines()
        if display_width(line) > 72 and not is_url_line(line, width=72)
    ]
    assert too_wide == []
    assert (
        max(display_width(line) for line in rendered.text.splitlines() if "://" not in line) == 72
    )
    assert not any(line.startswith(("。", "、", "」")) for line in rendered.text.splitlines())


def test_the_budget_edition_is_under_90_kb_as_sent(tmp_path: Path) -> None:
    """10 articles, each with two sources of three ✅ points, a lead, an image and three
    💡 points: under 90 KB of HTML once personalization filled in the longest values."""
    articles = load_articles(write_budget_articles(tmp_path, count=10, sources=2))
    assert all([len(s.points) for s in a.sources] == [3, 3] for a in articles)
    result = _render(articles)
    page = sent_html(result.html, SETTINGS, longest_values(SETTINGS))
    size = len(page.encode("utf-8"))
    assert size < 90 * 1024, f"{size / 1024:.1f} KB"
    assert page.count("✅") == 60 and page.count("💡") == 30
    assert "@@" not in page
    # The cuts kept what Outlook needs: MJML's conditional tables, sized images.
    assert page.count("<!--[if mso | IE]>") >= 10
    assert page.count('width="552"') == 10


def test_an_override_added_later_in_the_same_process_is_used(tmp_path: Path) -> None:
    templates = tmp_path / "templates" / "email"
    templates.mkdir(parents=True)
    articles = ARTICLES[:1]
    assert "さらに読む ⇒" in _render(articles, templates).text
    (templates / "digest.txt.j2").write_text(
        "{{ placeholders.name }} さん\n{% for a in articles %}{{ a.url }}\n{% endfor %}"
        "{{ placeholders.unsubscribe_url }}\n",
        encoding="utf-8",
    )
    assert _render(articles, templates).text == (
        f"@@name@@ さん\n{articles[0].url}\n@@unsubscribe_url@@\n"
    )


REFERENCE_MJML = """<mjml lang="ja"><mj-body background-color="#f3efe7">
<mj-section background-color="#ffffff" border-top="12px solid #f3efe7"
  border-left="3px solid #c9a227" border-radius="4px" padding="20px 0"><mj-column>
<mj-text font-size="15px" font-weight="bold" line-height="1.75" letter-spacing="0.02em"
  color="#2b2723" text-decoration="none" text-transform="none">x</mj-text>
<mj-image src="https://example.jp/a.jpg" alt="a" width="552px" border-radius="4px" />
<mj-button background-color="#8a2432" border-radius="6px">b</mj-button>
</mj-column></mj-section></mj-body></mjml>"""
# There before the card grew (the hidden preheader, the dark-mode media query).
PRE_EXISTING = {"max-height", "overflow", "mso-hide", "prefers-color-scheme"}


def _css_properties(page: str) -> set[str]:
    found = set()
    for style in re.findall(r"style=\"([^\"]*)\"|style='([^']*)'", page):
        for declaration in "".join(style).split(";"):
            if ":" in declaration:
                found.add(declaration.split(":")[0].strip().lower())
    for block in re.findall(r"<style[^>]*>(.*?)</style>", page, flags=re.S):
        found.update(re.findall(r"([a-z-]+)\s*:", block))
    return found


def test_no_css_beyond_what_mjml_itself_writes(rendered: RenderedEdition) -> None:
    """The card's borders, padding and colours are properties MJML's own components
    write (section borders, button radius): no email-client feature beyond its baseline."""
    baseline = _css_properties(inline_css(mjml_to_html(REFERENCE_MJML))) | PRE_EXISTING
    assert _css_properties(rendered.html) - baseline == set()
