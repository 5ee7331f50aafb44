"""Property: feed HTML stored as Markdown renders back to the same text, never to markup."""

from __future__ import annotations

import html
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest_mail.content.feedhtml import html_to_markdown, html_to_text

markdown_it = pytest.importorskip("markdown_it")
RENDER = markdown_it.MarkdownIt("commonmark")

# Pieces that mean something to Markdown or HTML, and Japanese text around them.
PIECES = st.sampled_from(
    [
        *"ab 1.-+#>*_`[]()<>&;\\!=|~\n\t",
        "あ",
        "。",
        "〜",
        "script",
        "&lt;",
        "&amp;",
        "1. ",
        "2) ",
        "- ",
        "# ",
        "```",
        "~~~",
        "<b>",
        "</p>",
        "<script>",
        "](javascript:x)",
    ]
)
TEXT = st.lists(PIECES, max_size=30).map("".join)


def _visible(rendered: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", rendered)).split())


@settings(max_examples=400, deadline=None)
@given(paragraph=TEXT, item=TEXT, link_text=TEXT)
def test_text_in_feed_html_stays_text(paragraph: str, item: str, link_text: str) -> None:
    fragment = (
        f"<p>{html.escape(paragraph)}</p><ul><li>{html.escape(item)}</li></ul>"
        f'<p><a href="https://chrysanthemum-digest.example.jp/a">{html.escape(link_text)}</a></p>'
    )
    markdown = html_to_markdown(fragment)
    rendered = RENDER.render(markdown)
    # The only tags are the ones the structure asks for: nothing from the text.
    tags = set(re.findall(r"</?([a-z0-9]+)", rendered))
    assert tags <= {"p", "ul", "li", "a"}
    expected = " ".join(f"{paragraph} {item} {link_text}".split())
    assert _visible(rendered) == expected
    # Plain text (the lead) is text as is: a list item is marked with "・".
    assert " ".join(html_to_text(fragment).replace("・", "", 1).split()) == expected
