"""`digest-mail articles import|list`: the site's RSS/Atom feed becomes article files."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from digest_mail.content.articles import load_article
from digest_mail.content.feedhtml import html_to_markdown, html_to_text

FEEDS = Path(__file__).parents[1] / "fixtures" / "feeds"
ATOM = FEEDS / "site-atom.xml"
RSS = FEEDS / "site-rss.xml"
SITE = "https://chrysanthemum-digest.example.jp"
PLAIN_HTTP = "http://chrysanthemum-digest.example.jp/articles/plain-http"


@pytest.fixture
def empty_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace with no articles yet (import creates articles/), default settings."""
    root = tmp_path / "ws"
    root.mkdir()
    (root / "digest-mail.toml").write_text("", encoding="utf-8")
    monkeypatch.chdir(root)
    return root


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def feed_server() -> Iterator[str]:
    """The fixtures folder over HTTP on 127.0.0.1, port chosen by the OS."""
    handler = functools.partial(_QuietHandler, directory=str(FEEDS))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _articles(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "articles").glob("*.md"))


def test_atom_import_reports_new_and_invalid_entries(empty_workspace: Path, run) -> None:
    result = run("articles", "import", str(ATOM))
    assert result.exit_code == 0, result.output
    assert result.output == (
        "new: articles/2026-11-20-trump-second-term-world.md  "
        "トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮…私たちの未来はどうなる?\n"
        "new: articles/2026-11-19-nuclear-taboo-nobel.md  "
        "核のタブーと被爆地の声：ノーベル平和賞の意味\n"
        "invalid: entry 3 (平文の接続で公開された記事): link "
        f"'{PLAIN_HTTP}' is not an absolute https URL\n"
        "invalid: entry 4 (日付のない記事): no published or updated date\n"
        "2 new, 0 skipped, 2 invalid\n"
    )
    article = load_article(empty_workspace / "articles/2026-11-20-trump-second-term-world.md")
    assert article.url == f"{SITE}/articles/trump-second-term-world"
    # 08:00 JST on the 20th is the 19th in UTC: the date stays the one the site wrote.
    assert article.published == dt.date(2026, 11, 20)
    assert article.category == "国際"
    assert article.image == f"{SITE}/images/trump-second-term.jpg"
    assert article.image_alt == article.title
    assert article.lead.startswith("2025年トランプ再選で世界はどう変わる?")
    assert "<" not in article.lead
    assert "## 北極星なき外交" in article.body
    assert "- 核容認、融和策、首脳会談の可能性。\n- 日本の安全保障への影響。" in article.body
    source = "https://mainichi.jp/articles/20190726/k00/00m/030/248000c"
    assert f"[さらに読む ⇒]({source})" in article.body
    # Text that looked like markup in the feed stays text, escaped for Markdown.
    assert r"数式 1 \< 2 と \<b\>タグ風の文字\</b\> は文字のまま。" in article.body
    for bad in ("script", "evil.example.net", "document.cookie", "onclick", "steal"):
        assert bad not in article.body

    thumb = load_article(empty_workspace / "articles/2026-11-19-nuclear-taboo-nobel.md")
    assert thumb.image == f"{SITE}/images/nobel-thumb.png"
    assert thumb.category == "社会"
    assert thumb.body == (
        "核兵器不使用の継続を「核のタブー」として守れるか。\n\n被爆地からの発信が重要だ。"
    )


def test_rss_import_then_second_import_adds_nothing(empty_workspace: Path, run) -> None:
    first = run("articles", "import", str(RSS))
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[-1] == "2 new, 1 skipped, 1 invalid"
    assert f"skipped: {SITE}/articles/weak-yen-2026  (appears twice in the feed)" in first.output
    assert (
        "invalid: entry 3 (スクリプトのリンク): "
        "link 'javascript:alert(document.cookie)' is not an absolute https URL"
    ) in first.output
    files = _articles(empty_workspace)
    assert files == ["2026-11-20-article-18844f47.md", "2026-11-21-weak-yen-2026.md"]
    before = {name: (empty_workspace / "articles" / name).read_bytes() for name in files}

    yen = load_article(empty_workspace / "articles/2026-11-21-weak-yen-2026.md")
    assert yen.title == "円安はどこまで続く? 家計と企業への影響を読み解く"
    assert yen.category == "経済"
    assert yen.image == f"{SITE}/images/weak-yen.jpg"
    assert yen.lead == "円安の長期化で、家計と企業はどう備えるべきか。"
    assert yen.body == (
        "輸入物価の上昇が家計を圧迫しています。\n\n"
        "> ✅ 日銀は金融政策の正常化を慎重に進める方針。\n\n"
        "1. 食料品の値上げ\n2. エネルギー価格\n\n"
        "危険なリンクと[日本銀行](https://www.boj.or.jp/)"
    )
    railway = load_article(empty_workspace / "articles/2026-11-20-article-18844f47.md")
    # The ideographic space of the title is kept; the slug is ASCII.
    assert railway.title == "地方鉄道の未来\u3000〜 存続か廃止か 〜"
    assert railway.image == f"{SITE}/images/local-railway.webp"
    assert railway.image_alt == railway.title

    second = run("articles", "import", str(RSS))
    assert second.exit_code == 0, second.output
    assert second.output == (
        f"skipped: {SITE}/articles/weak-yen-2026/  "
        "(already an article: articles/2026-11-21-weak-yen-2026.md)\n"
        f"skipped: {SITE}/articles/%E5%9C%B0%E6%96%B9%E9%89%84%E9%81%93  "
        "(already an article: articles/2026-11-20-article-18844f47.md)\n"
        f"skipped: {SITE}/articles/weak-yen-2026  "
        "(already an article: articles/2026-11-21-weak-yen-2026.md)\n"
        "invalid: entry 3 (スクリプトのリンク): "
        "link 'javascript:alert(document.cookie)' is not an absolute https URL\n"
        "0 new, 3 skipped, 1 invalid\n"
    )
    after = {n: (empty_workspace / "articles" / n).read_bytes() for n in _articles(empty_workspace)}
    assert after == before


def test_import_json_and_dry_run_write_nothing(empty_workspace: Path, run) -> None:
    result = run("articles", "import", str(ATOM), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["dry_run"] is True
    assert [a["path"] for a in data["new"]] == [
        "articles/2026-11-20-trump-second-term-world.md",
        "articles/2026-11-19-nuclear-taboo-nobel.md",
    ]
    assert [p["reason"] for p in data["invalid"]] == [
        f"link '{PLAIN_HTTP}' is not an absolute https URL",
        "no published or updated date",
    ]
    assert data["skipped"] == []
    assert not (empty_workspace / "articles").exists() or _articles(empty_workspace) == []


def test_import_keeps_existing_files_and_picks_a_free_name(empty_workspace: Path, run) -> None:
    folder = empty_workspace / "articles"
    folder.mkdir()
    taken = folder / "2026-11-21-weak-yen-2026.md"
    taken.write_text(
        "---\ntitle: 別の記事\nurl: https://chrysanthemum-digest.example.jp/articles/other\n"
        "published: 2026-11-21\n---\n本文\n",
        encoding="utf-8",
    )
    result = run("articles", "import", str(RSS))
    assert result.exit_code == 0, result.output
    assert "new: articles/2026-11-21-weak-yen-2026-2.md" in result.output
    assert taken.read_text(encoding="utf-8").startswith("---\ntitle: 別の記事\n")


def test_import_over_http(empty_workspace: Path, run, feed_server: str) -> None:
    result = run("articles", "import", f"{feed_server}/site-atom.xml", "--json", "--allow-http")
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "WARNING: fetching the feed over plain http: anyone on the network path can change"
        " its articles and links.\n"
    )
    assert len(json.loads(result.stdout)["new"]) == 2
    assert _articles(empty_workspace) == [
        "2026-11-19-nuclear-taboo-nobel.md",
        "2026-11-20-trump-second-term-world.md",
    ]


def test_import_http_error_is_one_line(empty_workspace: Path, run, feed_server: str) -> None:
    result = run("articles", "import", f"{feed_server}/missing.xml", "--allow-http")
    assert result.exit_code == 1
    assert result.stderr == (
        "WARNING: fetching the feed over plain http: anyone on the network path can change"
        " its articles and links.\n"
        f"Error: {feed_server}/missing.xml: the server answered 404 File not found\n"
        "Hint: check the feed address in a browser\n"
    )


def test_import_rejects_files_that_are_not_feeds(empty_workspace: Path, run) -> None:
    page = empty_workspace / "page.txt"
    page.write_text("これはフィードではありません。\n", encoding="utf-8")
    result = run("articles", "import", "page.txt")
    assert result.exit_code == 1
    assert result.output.startswith("Error: page.txt: not an RSS or Atom feed")
    assert result.output.endswith(
        "Hint: give the address of the site's feed, e.g. https://…/feed.xml\n"
    )

    missing = run("articles", "import", "nowhere.xml")
    assert missing.exit_code == 1
    assert missing.output == (
        "Error: nowhere.xml: no such feed file\nHint: give a path or an https:// URL\n"
    )


def test_import_stops_on_a_broken_existing_article(empty_workspace: Path, run) -> None:
    folder = empty_workspace / "articles"
    folder.mkdir()
    (folder / "broken.md").write_text("title: no fences\n", encoding="utf-8")
    result = run("articles", "import", str(RSS))
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: articles/broken.md:1: no front matter: the first line must be '---'\n"
    )
    assert _articles(empty_workspace) == ["broken.md"]


def _write(folder: Path, name: str, *, title: str, published: dt.date, category: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(
        f"---\ntitle: {title}\nurl: {SITE}/articles/{name[:-3]}\n"
        f"published: {published.isoformat()}\ncategory: {category}\n---\n本文\n",
        encoding="utf-8",
    )


def test_articles_list_shows_what_compose_would_pick(empty_workspace: Path, run) -> None:
    today = dt.date.today()
    folder = empty_workspace / "articles"
    days = dt.timedelta(days=1)
    _write(folder, "a.md", title="今週の国際記事", published=today - 2 * days, category="国際")
    _write(folder, "b.md", title="今日の経済記事", published=today, category="経済")
    _write(folder, "c.md", title="先月の記事", published=today - 30 * days, category="国際")

    result = run("articles", "list", "--since", "7d")
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"{today.isoformat()}  [経済] 今日の経済記事\n"
        "            articles/b.md\n"
        f"{(today - dt.timedelta(days=2)).isoformat()}  [国際] 今週の国際記事\n"
        "            articles/a.md\n"
        "2 articles\n"
    )
    every = run("articles", "list", "--all", "--category", "国際", "--json")
    assert [a["title"] for a in json.loads(every.output)] == ["今週の国際記事", "先月の記事"]

    bad = run("articles", "list", "--since", "1 week")
    assert bad.exit_code == 1
    assert bad.output == "Error: --since: '1 week' is not a duration like 90s, 15m, 6h, 7d or 2w\n"


def test_html_helpers_sanitize_before_anything_else() -> None:
    fragment = (
        '<p>本文<script>alert(1)</script><style>p{}</style><a href="javascript:x()">リンク</a></p>'
    )
    assert html_to_markdown(fragment) == "本文リンク"
    text = html_to_text("<p>一段落目</p><p>二段落目 &amp; <b>強調</b></p>")
    assert text == "一段落目 二段落目 & 強調"
    assert html_to_markdown("<p># 見出しではない</p><p>*星* と [角括弧]</p>") == (
        "\\# 見出しではない\n\n\\*星\\* と \\[角括弧\\]"
    )


def test_imported_articles_compose_and_stay_sanitized(workspace: Path, run) -> None:
    """The issue's promise: feed entries become articles that compose accepts, and the
    script in the feed reaches neither the HTML nor the text part."""
    for feed in (ATOM, RSS):
        assert run("articles", "import", str(feed)).exit_code == 0
    # The sample articles have no date in their names; imported ones do.
    imported = sorted(f"articles/{p.name}" for p in (workspace / "articles").glob("2026-11-*.md"))
    assert len(imported) == 4
    result = run("compose", *imported, "--edition", "2026-W48", "--json")
    assert result.exit_code == 0, result.output
    html = (workspace / "drafts/2026-W48/index.html").read_text(encoding="utf-8")
    text = (workspace / "drafts/2026-W48/index.txt").read_text(encoding="utf-8")
    titles = ("円安はどこまで続く? 家計と企業への影響を読み解く", "核のタブーと被爆地の声")
    for title in titles:
        assert title in html and title in text
    for part in (html, text):
        for bad in ("<script", "evil.example.net", "javascript:", "onerror", "document.cookie"):
            assert bad not in part
