"""Entity tricks in a feed: billion laughs and external entities (XXE) are never expanded."""

from __future__ import annotations

from pathlib import Path

from conftest import Runner

LAUGHS = '<!ENTITY lol0 "lollollollollollollollollollol">' + "".join(
    f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
)
FEED = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE rss [{LAUGHS}<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rss version="2.0"><channel><title>Chrysanthemum Digest</title>
<link>https://chrysanthemum-digest.example.jp/</link><description>今週</description>
<item><title>円安 &lol9; 家計</title>
<link>https://chrysanthemum-digest.example.jp/articles/weak-yen/</link>
<pubDate>Sat, 21 Nov 2026 07:15:00 +0900</pubDate>
<description>本文 &xxe; 終わり</description></item>
</channel></rss>
"""


def test_entities_in_a_feed_are_never_expanded(workspace: Path, run: Runner) -> None:
    (workspace / "feed.xml").write_text(FEED, encoding="utf-8")
    before = set((workspace / "articles").glob("*.md"))
    result = run("articles", "import", "feed.xml")
    assert result.exit_code == 0, result.output
    written = set((workspace / "articles").glob("*.md")) - before
    text = "".join(p.read_text(encoding="utf-8") for p in written)
    assert "lollol" not in text and "root:" not in text
    assert len(text) < 2000
