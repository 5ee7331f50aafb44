"""The HTML inside feed entries, made safe and written as Markdown or plain text.

A feed's content, summary and title may hold any HTML. Each fragment goes through nh3
with a small allowlist (:func:`sanitize_html`: scripts and styles go with their
content, links keep only ``href`` with https, http or mailto) before anything else reads
it; the converter then writes the article body as Markdown (:func:`html_to_markdown`)
or a title or lead as one line of text (:func:`html_to_text`). Text that was escaped
HTML in the feed stays text: Markdown's own syntax in it is escaped.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import ClassVar

import nh3

__all__ = ["escape_markdown", "html_to_markdown", "html_to_text", "sanitize_html"]

_ALLOWED_TAGS = {
    "p",
    "br",
    "a",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "blockquote",
    "strong",
    "b",
    "em",
    "i",
    "code",
    "pre",
    "hr",
    "div",
    "span",
}


def sanitize_html(fragment: str) -> str:
    """nh3 with a small allowlist: scripts and styles go with their content."""
    return nh3.clean(
        fragment,
        tags=_ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes={"a": {"href"}},
        url_schemes={"https", "http", "mailto"},
        link_rel=None,
    )


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>&~|])")
_MD_LINE_START = re.compile(r"^(\s*)([#>+\-=]|\d+(?=[.)]))", re.MULTILINE)


def escape_markdown(text: str) -> str:
    """``text`` as Markdown that reads back as the same text."""
    # Text that was escaped HTML in the feed (&lt;script&gt;) must stay text in Markdown.
    text = _MD_SPECIAL.sub(r"\\\1", text)

    # "1." starts a list: the escape goes before the dot, a digit cannot be escaped.
    def escape(match: re.Match[str]) -> str:
        mark = match.group(2)
        return match.group(1) + (mark + "\\" if mark[0].isdigit() else "\\" + mark)

    return _MD_LINE_START.sub(escape, text)


class _Converter(HTMLParser):
    """Sanitized HTML → Markdown (markdown=True) or plain text."""

    _BLOCKS: ClassVar[set[str]] = {
        "p",
        "div",
        "ul",
        "ol",
        "li",
        "blockquote",
        "pre",
        "hr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
    }

    def __init__(self, *, markdown: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.markdown = markdown
        self.blocks: list[tuple[str, bool]] = []  # (text, is a list item)
        self.current: list[str] = []
        self.prefix = ""
        self.lists: list[list[int]] = []  # one [counter] per open list; counter -1 = bullets
        self.quote = 0
        self.pre = 0
        self.links: list[str | None] = []

    def _flush(self) -> None:
        text = "".join(self.current)
        self.current = []
        text = text.strip("\n") if self.pre else re.sub(r"[ \t\r\n]+", " ", text).strip()
        if text:
            prefix = self.prefix
            if self.quote and self.markdown:
                prefix = "> " * self.quote + prefix
            if self.pre and self.markdown:
                text = "```\n" + text + "\n```"
            self.blocks.append((prefix + text, bool(self.lists)))
        self.prefix = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCKS or tag == "br":
            if tag == "br" and self.pre:
                self.current.append("\n")
                return
            self._flush()
        if tag in {"ul", "ol"}:
            self.lists.append([0 if tag == "ol" else -1])
        elif tag == "li":
            depth = max(len(self.lists) - 1, 0)
            counter = self.lists[-1] if self.lists else [-1]
            if counter[0] >= 0:
                counter[0] += 1
                marker = f"{counter[0]}. "
            else:
                marker = "- " if self.markdown else "・"
            self.prefix = "  " * depth + marker
        elif tag == "blockquote":
            self.quote += 1
        elif tag == "pre":
            self.pre += 1
        elif tag == "hr" and self.markdown:
            self.blocks.append(("---", False))
        elif tag in {"h1", "h2", "h3", "h4", "h5", "h6"} and self.markdown:
            self.prefix = "#" * int(tag[1]) + " "
        elif tag in {"strong", "b"} and self.markdown:
            self.current.append("**")
        elif tag in {"em", "i"} and self.markdown:
            self.current.append("*")
        elif tag == "code" and self.markdown and not self.pre:
            self.current.append("`")
        elif tag == "a":
            href = dict(attrs).get("href")
            self.links.append(href)
            if self.markdown and href:
                self.current.append("[")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"strong", "b"} and self.markdown:
            self.current.append("**")
        elif tag in {"em", "i"} and self.markdown:
            self.current.append("*")
        elif tag == "code" and self.markdown and not self.pre:
            self.current.append("`")
        elif tag == "a":
            href = self.links.pop() if self.links else None
            if self.markdown and href:
                target = href.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
                self.current.append(f"]({target})")
        if tag in self._BLOCKS:
            self._flush()
        if tag in {"ul", "ol"} and self.lists:
            self.lists.pop()
        elif tag == "blockquote":
            self.quote = max(self.quote - 1, 0)
        elif tag == "pre":
            self.pre = max(self.pre - 1, 0)

    def handle_data(self, data: str) -> None:
        if self.markdown and not self.pre:
            data = escape_markdown(data)
        self.current.append(data)

    def result(self) -> str:
        self.close()
        self._flush()
        out: list[str] = []
        previous_item = False
        for text, item in self.blocks:
            if out:
                # Items of one list stay on consecutive lines (a tight Markdown list).
                out.append("\n" if item and previous_item else "\n\n")
            out.append(text)
            previous_item = item
        return "".join(out)


def html_to_markdown(fragment: str) -> str:
    """Sanitize ``fragment`` with nh3, then write it as Markdown (text stays text)."""
    converter = _Converter(markdown=True)
    converter.feed(sanitize_html(fragment))
    return converter.result()


def html_to_text(fragment: str) -> str:
    """Sanitize ``fragment`` with nh3, then keep only its text, paragraphs joined by spaces."""
    converter = _Converter(markdown=False)
    converter.feed(sanitize_html(fragment))
    return re.sub(r"\n+", " ", converter.result()).strip()
