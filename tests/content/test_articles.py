# ruff: noqa: E501  (Japanese sample data and exact messages are long lines on purpose)
"""Article files: the sample workspace's articles, front matter errors, selection."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from compose_samples import replace_field, write_article
from conftest import REPO
from digest_mail.config import find_workspace
from digest_mail.content.articles import (
    Source,
    excerpt,
    load_article,
    load_articles,
    select_articles,
)
from digest_mail.errors import InputError

SAMPLE_ARTICLES = sorted((REPO / "articles").glob("*.md"))


def test_the_sample_workspace_has_six_japanese_articles_in_every_category() -> None:
    articles = load_articles(SAMPLE_ARTICLES)
    assert len(articles) >= 6
    assert {a.category for a in articles} >= {
        "国際",
        "経済",
        "政治",
        "社会",
        "テクノロジー",
        "文化",
    }
    assert len({a.published for a in articles}) >= 5
    assert any(a.image and a.image_alt for a in articles)
    assert any(not a.points for a in articles)
    for article in articles:
        assert article.url.startswith("https://")
        assert article.lead


def test_the_real_article_keeps_its_shape() -> None:
    article = load_article(REPO / "articles" / "trump-reelection-world-security.md")
    assert article.title.startswith("トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮")
    assert article.published == dt.date(2025, 2, 20)
    assert article.category == "国際"
    assert article.lead.startswith("2025年トランプ再選で世界はどう変わる?")
    assert article.points[0] == (
        "トランプ氏の再選は、米国の外交政策を大きく変え、国際社会に大きな影響を与える可能性があります。"
    )
    assert len(article.points) == 3
    assert article.sources[0] == Source(
        title="米国、完全非核化から北朝鮮に譲歩か現実的な核開発凍結案が浮上",
        url="https://mainichi.jp/articles/20190726/k00/00m/030/248000c",
        published=dt.date(2019, 7, 26),
        points=(
            "米朝実務者協議再開を前に、北朝鮮が短距離弾道ミサイルを発射し揺さぶりをかけている。",
            "トランプ米政権内では、北朝鮮の核開発「凍結案」が浮上しており、これはこれまでの「完全廃棄」要求からの譲歩となる可能性がある。",
            "この「凍結案」は、日本の安全保障環境にも大きな影響を与える可能性がある。",
        ),
    )
    assert article.sources[0].shown_publisher == "mainichi.jp"  # no publisher: the host
    assert article.sources[2].published == dt.date(2025, 2, 19)
    assert article.sources[2].shown_publisher == "朝日新聞+"
    assert [len(s.points) for s in article.sources] == [3, 3, 3]
    for heading in ("## 北極星なき外交", "## 世界滅亡の警告", "## 同盟国の不安", "## 🚩 結論!"):
        assert heading in article.body
    assert article.body.count("✅") == 9
    assert article.body.count("[さらに読む ⇒](https://") == 3
    assert article.slug == "trump-reelection-world-security"


@pytest.mark.parametrize(
    ("line_start", "new_line", "expected"),
    [
        (
            "title:",
            None,
            "{path}: title: missing required field",
        ),
        (
            "url:",
            "url: http://chrysanthemum-digest.example.jp/articles/a",
            "{path}:3: url: 'http://chrysanthemum-digest.example.jp/articles/a' is not an absolute https URL",
        ),
        ("url:", "url: /articles/a", "{path}:3: url: '/articles/a' is not an absolute https URL"),
        (
            "published:",
            "published: 2025-02-30",
            "{path}:4: published: '2025-02-30' is not a date like 2025-02-20",
        ),
        (
            "published:",
            "published: 2025年2月20日",
            "{path}:4: published: '2025年2月20日' is not a date like 2025-02-20",
        ),
        ("published:", None, "{path}: published: missing required field"),
        (
            "category:",
            "category: 国際\nimage: https://chrysanthemum-digest.example.jp/a.jpg",
            "{path}:7: image_alt: an image needs alt text",
        ),
        (
            "category:",
            "category: 国際\nimage: hero.jpg\nimage_alt: 写真",
            "{path}:7: image: 'hero.jpg' is not an absolute https URL",
        ),
        ("category:", "category: 国際\nsubtitle: 副題", "{path}:7: subtitle: unknown field"),
        (
            "points:",
            "points: 要点",
            "{path}:7: points: expected a list of short sentences ('- …' lines)",
        ),
        (
            "    published: 2019",
            "    published: 2019/07/26",
            "{path}:11: sources[0].published: '2019/07/26' is not a date like 2025-02-20",
        ),
        (
            "    published: 2019",
            "    published: 2019-07-26\n    summary: 要約",
            "{path}:11: sources[0].summary: unknown field",
        ),
        (
            "    published: 2019",
            "    published: 2019-07-26\n    points: 凍結案が浮上",
            "{path}:11: sources[0].points: expected a list of short sentences ('- …' lines)",
        ),
        (
            "    published: 2019",
            "    published: 2019-07-26\n    points:\n      - ''",
            "{path}:11: sources[0].points[0]: expected a non-empty sentence",
        ),
        (
            "    published: 2019",
            "    published: 2019-07-26\n    publisher: ''",
            "{path}:11: sources[0].publisher: expected the publisher's name as text",
        ),
    ],
)
def test_each_front_matter_mistake_names_file_line_and_field(
    tmp_path: Path, line_start: str, new_line: str | None, expected: str
) -> None:
    path = write_article(tmp_path, "bad")
    replace_field(path, line_start, new_line)
    with pytest.raises(InputError) as caught:
        load_article(path)
    assert str(caught.value) == expected.format(path=path)


def test_yaml_syntax_errors_name_the_line(tmp_path: Path) -> None:
    path = write_article(tmp_path, "bad")
    replace_field(path, "lead:", "lead: 「引用」: 解説")
    with pytest.raises(InputError) as caught:
        load_article(path)
    # The parser's wording differs between LibYAML and pure-Python PyYAML.
    assert str(caught.value).startswith(
        f"{path}:5: front matter is not valid YAML: mapping values are not allowed"
    )
    assert caught.value.hint == "quote values that contain ': ' or start with a special character"


def test_a_file_without_front_matter_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plain.md"
    path.write_text("# 見出し\n本文です。\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_article(path)
    assert str(caught.value) == f"{path}:1: no front matter: the first line must be '---'"
    assert (
        caught.value.hint
        == "start the file with a '---' line, the YAML fields, then another '---' line"
    )


def test_unclosed_front_matter_and_non_utf8_are_named(tmp_path: Path) -> None:
    unclosed = tmp_path / "unclosed.md"
    unclosed.write_text("---\ntitle: 見出し\n", encoding="utf-8")
    with pytest.raises(
        InputError, match=r"unclosed.md:1: front matter is not closed by a '---' line"
    ):
        load_article(unclosed)
    sjis = tmp_path / "sjis.md"
    sjis.write_bytes("---\ntitle: 見出し\n---\n".encode("cp932"))
    with pytest.raises(InputError, match=r"sjis.md: not UTF-8 text"):
        load_article(sjis)


def test_python_tags_are_refused_not_executed(tmp_path: Path) -> None:
    path = write_article(tmp_path, "tagged")
    replace_field(path, "lead:", "lead: !!python/object/apply:os.system ['true']")
    with pytest.raises(InputError, match="front matter is not valid YAML"):
        load_article(path)


def test_select_articles_by_window_and_category(workspace: Path) -> None:
    today = dt.date(2026, 11, 25)
    ws = find_workspace(workspace)
    week = select_articles(ws, since=dt.timedelta(days=7), category=None, today=today)
    assert [a.slug for a in week] == [
        "diet-election-reform",
        "generative-ai-schools",
        "yen-interest-rates-households",
        "kyoto-crafts-successors",
        "heatwave-elderly-care",
    ]
    culture = select_articles(ws, since=dt.timedelta(days=7), category="文化", today=today)
    assert [a.slug for a in culture] == ["kyoto-crafts-successors"]
    assert select_articles(ws, since=None, category="国際", today=today)[0].published == dt.date(
        2025, 2, 20
    )
    assert select_articles(ws, since=dt.timedelta(days=7), category="国際", today=today) == []


def test_a_source_shows_its_publisher_or_its_host(tmp_path: Path) -> None:
    path = write_article(tmp_path, "a")
    replace_field(path, "    published: 2019", "    published: 2019-07-26\n    publisher: 毎日新聞")
    assert load_article(path).sources[0].shown_publisher == "毎日新聞"
    replace_field(path, "    publisher:", None)
    assert load_article(path).sources[0].shown_publisher == "mainichi.jp"
    assert Source(title="t", url="https://www.yomiuri.co.jp/a").shown_publisher == "yomiuri.co.jp"


def test_select_articles_orders_newest_first_whatever_the_file_names(workspace: Path) -> None:
    ws = find_workspace(workspace)
    for slug, day in (("a-oldest", 10), ("b-newest", 24), ("c-middle", 17)):
        write_article(workspace / "articles", slug, published=dt.date(2026, 11, day))
    chosen = select_articles(ws, since=None, category=None, today=dt.date(2026, 11, 25))
    dates = [a.published for a in chosen]
    assert dates == sorted(dates, reverse=True)
    assert chosen[-1].slug == "trump-reelection-world-security"  # the 2025 article last


EXCERPT_BODY = """## 北極星なき外交

### トランプ再選で、北朝鮮との関係はどうなる?

*核容認、融和策、首脳会談の可能性。*

北朝鮮問題におけるトランプ氏の姿勢と、**日本の安全保障**への影響について[解説](https://example.jp/a)します。

> **米国、完全非核化から北朝鮮に譲歩か**
>
> ✅ 米朝実務者協議再開を前に、北朝鮮が短距離弾道ミサイルを発射した。

今後の動向に注目です。
"""


def test_the_excerpt_takes_prose_paragraphs_whole_within_the_limit() -> None:
    first = "北朝鮮問題におけるトランプ氏の姿勢と、日本の安全保障への影響について解説します。"
    assert excerpt(EXCERPT_BODY, 200) == first + "\n今後の動向に注目です。"
    assert excerpt(EXCERPT_BODY, len(first)) == first  # the second does not fit: left out
    # A first paragraph over the limit is cut after its last 。 or, without one, with …
    assert excerpt("一文目です。二文目はとても長い文です。", 12) == "一文目です。"
    assert excerpt("句点のない長い段落", 5) == "句点のな…"
    assert excerpt("## 見出しだけ\n\n💡 結論だけ", 100) == ""
    # Lines of one paragraph join without a space in Japanese, with one between words.
    assert (
        excerpt("改行を含む\n段落です。\nThe end\nof it.", 100)
        == "改行を含む段落です。 The end of it."
    )
