# ruff: noqa: E501  (Japanese sample data and exact messages are long lines on purpose)
"""Article files: the sample workspace's articles, front matter errors, selection."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from compose_samples import replace_field, write_article
from conftest import REPO
from digest_mail.articles import Source, load_article, load_articles, select_articles
from digest_mail.config import find_workspace
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
    )
    assert article.sources[2].published == dt.date(2025, 2, 19)
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
