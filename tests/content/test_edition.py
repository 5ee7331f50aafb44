"""The edition as content: ids, and the subject and words an edition is built with."""

from __future__ import annotations

import datetime as dt

import pytest

from conftest import REPO
from digest_mail.config import Settings
from digest_mail.content.articles import load_articles
from digest_mail.content.edition import (
    build_edition,
    check_edition_id,
    default_edition_id,
    is_edition_id,
)
from digest_mail.errors import InputError

SETTINGS = Settings()
ARTICLES = load_articles([REPO / "articles" / "kyoto-crafts-successors.md"])
TODAY = dt.date(2026, 11, 25)


def test_the_default_id_is_the_iso_week() -> None:
    assert default_edition_id(TODAY) == "2026-W48"
    assert default_edition_id(dt.date(2027, 1, 1)) == "2026-W53"


@pytest.mark.parametrize("value", ["2026-W48", "special.1", "a", "x" * 64])
def test_edition_ids(value: str) -> None:
    assert is_edition_id(value)
    assert check_edition_id(value) == value


@pytest.mark.parametrize("value", ["", "../x", "-W48", "2026 W48", "x" * 65, 48, None])
def test_not_edition_ids(value: object) -> None:
    assert not is_edition_id(value)
    with pytest.raises(InputError, match="is not an edition id"):
        check_edition_id(value, field="id", path="drafts/x/edition.json")


def test_an_edition_takes_its_words_from_the_settings_unless_given() -> None:
    edition = build_edition(ARTICLES, settings=SETTINGS, today=TODAY)
    assert edition.id == "2026-W48"
    assert edition.subject == "Chrysanthemum Digest 2026-W48 今週の注目記事"
    assert edition.articles == tuple(ARTICLES)
    given = build_edition(
        ARTICLES,
        settings=SETTINGS,
        today=TODAY,
        edition_id="special",
        subject=" 特集  {edition} ",
        intro="  はじめに \n",
        preheader="一行\n の 要約",
    )
    assert (given.id, given.subject, given.intro, given.preheader) == (
        "special",
        "特集 special",
        "はじめに",
        "一行 の 要約",
    )


@pytest.mark.parametrize(
    ("subject", "says"),
    [
        ("{edition.__class__}", "may only use {edition}"),
        ("{0}", "may only use {edition}"),
        ("=?utf-8?q?x=0D=0ABcc:_v@evil.example?=", "encoded-word syntax"),
        ("   ", "the subject is empty"),
    ],
)
def test_subjects_that_cannot_be_sent_as_written_are_refused(subject: str, says: str) -> None:
    with pytest.raises(InputError, match=says.replace("{", r"\{").replace("}", r"\}")):
        build_edition(ARTICLES, settings=SETTINGS, today=TODAY, subject=subject)


def test_no_articles_no_edition() -> None:
    with pytest.raises(InputError, match="no articles to compose"):
        build_edition([], settings=SETTINGS, today=TODAY)
