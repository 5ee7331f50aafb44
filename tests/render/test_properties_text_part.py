"""Property test: the whole text part, as the templates lay a card out (indents, ✅ and 💡
prefixes, source lines), keeps every line within 72 display columns unless a URL on it
makes it longer, and no line starts with closing punctuation after a character that
could have moved down with it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO
from digest_mail.config import load_settings
from digest_mail.content.articles import Article, Source
from digest_mail.content.edition import build_edition
from digest_mail.render.plaintext import _NO_START as NO_START
from digest_mail.render.plaintext import display_width, is_url_line
from digest_mail.render.renderer import TEXT_TEMPLATE, make_environment, template_context

SETTINGS = load_settings(REPO / "digest-mail.toml", environ={})
WIDTH = 72
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORDS = [
    *"トランプ再選で変わる世界核軍縮同盟北朝鮮の未来はどうなる熱中症搬送過去最多",
    *"、。」「『』（）…ー々っゃ！？・：ｶﾅ①",
    *["NATO", "2.1倍", "0.75%", " ", "AI", "Economist"],
]
sentences = st.lists(st.sampled_from(WORDS), min_size=1, max_size=90).map("".join).map(str.strip)
sentences = sentences.filter(bool)
urls = st.sampled_from(
    [
        "https://mainichi.jp/articles/20190726/k00/00m/030/248000c",
        "https://newsdig.tbs.co.jp/articles/nbc/1539340?display=1&utm_source=newsletter&x="
        + "y" * 60,
    ]
)
sources = st.builds(
    Source,
    title=sentences,
    url=urls,
    published=st.one_of(st.none(), st.just(dt.date(2019, 7, 26))),
    publisher=st.one_of(st.none(), sentences),
    points=st.lists(sentences, max_size=3).map(tuple),
)
articles = st.builds(
    Article,
    path=st.just(Path("articles/a.md")),
    slug=st.just("a"),
    title=sentences,
    url=st.just("https://chrysanthemum-digest.example.jp/articles/a"),
    published=st.just(dt.date(2025, 2, 20)),
    lead=st.one_of(st.just(""), sentences),
    category=st.sampled_from(["", "国際", "テクノロジー"]),
    points=st.lists(sentences, max_size=3).map(tuple),
    sources=st.lists(sources, max_size=2).map(tuple),
    body=st.lists(sentences, max_size=3).map("\n\n".join),
)


@PROPERTY
@given(
    cards=st.lists(articles, min_size=1, max_size=3),
    mode=st.sampled_from(["cards", "links", "none"]),
    body=st.sampled_from(["none", "excerpt"]),
)
def test_every_line_of_the_text_part_fits_72_columns(
    cards: list[Article], mode: str, body: str
) -> None:
    chosen = dataclasses.replace(
        SETTINGS, edition=dataclasses.replace(SETTINGS.edition, sources=mode, body=body)
    )
    edition = build_edition(cards, settings=chosen, today=dt.date(2026, 11, 25))
    text = (
        make_environment(None).get_template(TEXT_TEMPLATE).render(template_context(edition, chosen))
    )
    lines = text.splitlines()
    for line in lines:
        if display_width(line) > WIDTH:
            assert is_url_line(line, width=WIDTH), line
    for before, line in itertools.pairwise(lines):
        stripped = line.lstrip()
        if stripped[:1] in NO_START and before.strip() and line == stripped:
            # Only after a run of punctuation longer than the wrapper moves down.
            assert all(c in NO_START for c in before[-3:]), (before, line)
