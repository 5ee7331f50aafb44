"""The card, read back from the composed edition: each source's link, title, date and ✅
points, in order, in both parts; the 💡 points under 🚩 結論!; the [edition] settings."""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import Runner
from digest_mail.content.articles import Article, load_articles
from digest_mail.content.edition import default_edition_id
from digest_mail.render.renderer import slash_date

EDITION = default_edition_id(dt.date.today())


class _Reading(HTMLParser):
    """The HTML part as a reader meets it: text runs and link targets, in page order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.events.append(f"href={href}")

    def handle_data(self, data: str) -> None:
        text = "".join(data.split())
        if text:
            self.events.append(text)


def _html_events(page: str) -> str:
    reading = _Reading()
    reading.feed(page)
    reading.close()
    return "\n".join(reading.events)


def _in_order(haystack: str, needles: list[str]) -> None:
    """Each needle found after the previous one."""
    position = 0
    for needle in needles:
        found = haystack.find(needle, position)
        assert found >= 0, f"{needle!r} not found after position {position}"
        position = found + len(needle)


def _squash(text: str) -> str:
    return "".join(text.split())


def _expected(article: Article, *, html: bool) -> list[str]:
    """What the card says, in order, as the HTML reader or the text reader finds it."""
    link = (lambda url: f"href={url}") if html else (lambda url: url)
    needles = [_squash(article.title)]
    for source in article.sources:
        if html:
            needles.append(link(source.url))
        needles.append(_squash(source.title))
        if source.published:
            needles.append("公開日:" + slash_date(source.published))
        needles += [_squash("✅ " + point) for point in source.points]
        needles.append(link(source.url))  # さらに読む ⇒ to the source
    if article.points:
        needles.append(_squash("🚩 結論!"))
        needles += [_squash("💡 " + point) for point in article.points]
    needles.append(link(article.url))
    return needles


def _compose(workspace: Path, run: Runner, *args: str) -> tuple[str, str, list[Article]]:
    paths = sorted((workspace / "articles").glob("*.md"))
    names = [str(p.relative_to(workspace)) for p in paths]
    result = run("compose", *names, *args)
    assert result.exit_code == 0, result.output
    draft = workspace / "drafts" / EDITION
    page = (draft / "index.html").read_text(encoding="utf-8")
    text = (draft / "index.txt").read_text(encoding="utf-8")
    return page, text, load_articles(paths)


def test_each_source_and_the_conclusion_are_in_both_parts_in_order(
    workspace: Path, run: Runner
) -> None:
    page, text, articles = _compose(workspace, run)
    events, squashed = _html_events(page), _squash(text)
    expected_html = [n for a in articles for n in _expected(a, html=True)]
    expected_text = [n for a in articles for n in _expected(a, html=False)]
    assert sum(len(s.points) for a in articles for s in a.sources) == 16
    _in_order(events, expected_html)
    _in_order(squashed, expected_text)
    # 「さらに読む ⇒」 is the source's link, the button the article's.
    assert re.findall(r"さらに読む ⇒", page) == ["さらに読む ⇒"] * 9
    for article in articles:
        for source in article.sources:
            assert f"href={source.url}\nさらに読む⇒" in events
        assert f"href={article.url}\n記事を読む⇒" in events
        assert "記事を読む ⇒\n" + article.url in text


def _settings(workspace: Path, lines: str) -> None:
    """Set [edition] keys of the sample workspace's settings (replacing the sample's)."""
    config = workspace / "digest-mail.toml"
    text = config.read_text(encoding="utf-8")
    for line in lines.splitlines():
        key = line.split(" = ")[0]
        text = re.sub(rf"^{key} = .*\n", "", text, flags=re.M)
    config.write_text(text.replace("[edition]\n", f"[edition]\n{lines}\n"), encoding="utf-8")


def test_sources_as_links_keep_title_publisher_date_and_link_but_no_points(
    workspace: Path, run: Runner
) -> None:
    _settings(workspace, 'sources = "links"')
    page, text, articles = _compose(workspace, run)
    events = _html_events(page)
    for article in articles:
        for source in article.sources:
            assert f"href={source.url}\n{_squash(source.title)}" in events
            assert "  " + source.url in text.splitlines()  # a URL on a line of its own
    assert "✅" not in page and "✅" not in text
    assert "さらに読む ⇒" not in page
    assert "(朝日新聞+2025/02/19)" in _squash(text)


def test_sources_none_leaves_them_out_of_both_parts(workspace: Path, run: Runner) -> None:
    _settings(workspace, 'sources = "none"')
    page, text, articles = _compose(workspace, run)
    for article in articles:
        for source in article.sources:
            assert source.url not in page and source.url not in text
        assert article.url in text
    assert "✅" not in page and "💡" in page


def test_body_excerpt_shows_the_first_prose_paragraphs(workspace: Path, run: Runner) -> None:
    _settings(workspace, 'body = "excerpt"\nexcerpt_length = 60')
    page, text, _ = _compose(workspace, run)
    first = "北朝鮮問題におけるトランプ氏の姿勢と、日本の安全保障への影響について解説します。"
    assert f'<p class="ex" style="margin:10px 0 0">{first}</p>' in page
    assert first in _squash(text)
    default = _compose_default(workspace, run)
    assert first not in default


def _compose_default(workspace: Path, run: Runner) -> str:
    _settings(workspace, 'body = "none"')
    _, text, _ = _compose(workspace, run)
    return _squash(text)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'sources = "cardz"',
            "Error: {path}: edition.sources: 'cardz' is not one of cards, links, none\n",
        ),
        ('body = "full"', "Error: {path}: edition.body: 'full' is not one of none, excerpt\n"),
        (
            "excerpt_length = 5",
            "Error: {path}: edition.excerpt_length: 5 is out of range (20 to 2000 characters)\n",
        ),
    ],
)
def test_edition_settings_are_validated(
    workspace: Path, run: Runner, line: str, expected: str
) -> None:
    _settings(workspace, line)
    result = run("compose", "articles/heatwave-elderly-care.md")
    assert (result.exit_code, result.output) == (
        1,
        expected.format(path=workspace / "digest-mail.toml"),
    )


def test_compose_orders_newest_first_unless_the_editor_names_the_files(
    workspace: Path, run: Runner
) -> None:
    meta = workspace / "drafts" / EDITION / "edition.json"
    assert run("compose", "--since", "3650d").exit_code == 0
    dates = [a["published"] for a in json.loads(meta.read_text("utf-8"))["articles"]]
    assert len(dates) == 6
    assert dates == sorted(dates, reverse=True)
    named = ["articles/trump-reelection-world-security.md", "articles/kyoto-crafts-successors.md"]
    assert run("compose", *named, "--since", "3650d").exit_code == 0
    slugs = [a["slug"] for a in json.loads(meta.read_text("utf-8"))["articles"]]
    assert slugs == ["trump-reelection-world-security", "kyoto-crafts-successors"]
