"""The one placeholder filler: what each token shows to a reader, the sample reader and
the public archive, and how a body is filled."""

from __future__ import annotations

import dataclasses

from digest_mail.config import Settings
from digest_mail.mail.placeholders import (
    PLACEHOLDERS,
    TOKENS,
    fill,
    fill_values,
    neutral_values,
    placeholder_values,
    sample_values,
)

SETTINGS = Settings()
BODY = '@@greeting@@、@@name@@ / @@email@@ / <a href="@@unsubscribe_url@@">解除</a> @@other@@'


def test_a_reader_with_a_name_and_one_without() -> None:
    named = placeholder_values(SETTINGS, "taro@example.jp", "山田 太郎", "https://u.example.jp/t")
    assert named == (
        ("@@greeting@@", "山田 太郎 さん"),
        ("@@name@@", "山田 太郎"),
        ("@@email@@", "taro@example.jp"),
        ("@@unsubscribe_url@@", "https://u.example.jp/t"),
    )
    nameless = dict(placeholder_values(SETTINGS, "x@example.jp", "", "https://u.example.jp/t"))
    assert nameless["@@greeting@@"] == nameless["@@name@@"] == "読者の皆さま"


def test_the_html_values_are_escaped_and_the_text_values_are_not() -> None:
    text, markup = fill_values(
        settings=SETTINGS, to_address="a@example.jp", to_name='<b>"A&B"</b>', unsubscribe_url="u"
    )
    assert text["@@name@@"] == '<b>"A&B"</b>'
    assert markup["@@name@@"] == "&lt;b&gt;&quot;A&amp;B&quot;&lt;/b&gt;"
    assert list(text) == list(markup) == list(PLACEHOLDERS.values())


def test_fill_replaces_every_token_it_is_given_and_nothing_else() -> None:
    _, markup = fill_values(
        settings=SETTINGS,
        to_address="a@example.jp",
        to_name="花子",
        unsubscribe_url="https://u/?a=1&b=2",
    )
    assert fill(BODY, markup) == (
        '花子 さん、花子 / a@example.jp / <a href="https://u/?a=1&amp;b=2">解除</a> @@other@@'
    )
    assert TOKENS.findall(BODY) == list(PLACEHOLDERS.values())


def test_the_sample_reader_in_previews() -> None:
    assert sample_values(SETTINGS) == {
        "@@greeting@@": "山田 花子 さん",
        "@@name@@": "山田 花子",
        "@@email@@": "yamada.hanako@example.jp",
        "@@unsubscribe_url@@": "https://chrysanthemum-digest.example.jp/unsubscribe?token=preview",
    }


def test_the_public_archive_shows_nobody() -> None:
    assert neutral_values(SETTINGS) == {
        "@@greeting@@": "読者の皆さま",
        "@@name@@": "読者の皆さま",
        "@@email@@": "ご登録のメールアドレス",
        "@@unsubscribe_url@@": "#",
    }
    archive = dataclasses.replace(SETTINGS.archive, subscribe_url=" https://x.example.jp/?a&b ")
    subscribed = neutral_values(dataclasses.replace(SETTINGS, archive=archive))
    assert subscribed["@@unsubscribe_url@@"] == "https://x.example.jp/?a&amp;b"
