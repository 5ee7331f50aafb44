# ruff: noqa: E501  (HTML sample data is long lines on purpose)
"""A small rendered edition for delivery tests.

A real ``digest_mail.render.draft.Draft`` with content in the form compose produces: an HTML
part and a text part carrying the per-recipient tokens.
Delivery tests use it so they do not depend on the renderer; tests that go through
compose use the real draft.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from digest_mail.mail.placeholders import PLACEHOLDERS
from digest_mail.render.draft import Draft, content_hash

NAME, EMAIL, UNSUB = PLACEHOLDERS["name"], PLACEHOLDERS["email"], PLACEHOLDERS["unsubscribe_url"]
GREETING = PLACEHOLDERS["greeting"]


HTML = f"""<!doctype html>
<html lang="ja">
<head><meta charset="utf-8"><title>Chrysanthemum Digest 2026-W48</title></head>
<body style="margin:0;padding:0;background:#f4f1ea">
<div style="display:none;max-height:0;overflow:hidden">トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮…</div>
<p style="font-size:16px;line-height:1.7">{GREETING}、こんにちは。今週の Chrysanthemum Digest をお届けします。</p>
<h2 style="font-size:20px"><a href="https://chrysanthemum-digest.example.jp/articles/trump-reelection" style="color:#b5403a">トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮…私たちの未来はどうなる?</a></h2>
<p style="font-size:15px;line-height:1.7">2025年トランプ再選で世界はどう変わる?一国主義と現実主義が交錯する外交・防衛政策、核軍縮への影響、北朝鮮との関係、同盟国への波紋…</p>
<ul>
<li>💡 米朝実務者協議再開を前に、北朝鮮が短距離弾道ミサイルを発射し揺さぶりをかけている。</li>
<li>💡 「凍結案」は、日本の安全保障環境にも大きな影響を与える可能性がある。</li>
</ul>
.a line that starts with a dot must survive SMTP dot-stuffing
<p style="font-size:12px;color:#777">このメールは {EMAIL} 宛にお送りしています。<a href="{UNSUB}" style="color:#777">配信停止はこちら</a></p>
</body>
</html>
"""

TEXT = f"""{GREETING}、こんにちは。今週の Chrysanthemum Digest をお届けします。

■ トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮…私たちの未来はどうなる?
https://chrysanthemum-digest.example.jp/articles/trump-reelection

2025年トランプ再選で世界はどう変わる?一国主義と現実主義が交錯する外交・防衛政策、
核軍縮への影響、北朝鮮との関係、同盟国への波紋…

 💡 米朝実務者協議再開を前に、北朝鮮が短距離弾道ミサイルを発射し揺さぶりをかけている。
 💡 「凍結案」は、日本の安全保障環境にも大きな影響を与える可能性がある。

.
..
--
このメールは {EMAIL} 宛にお送りしています。
配信停止: {UNSUB}
"""


def make_draft(**changes: Any) -> Draft:
    base = Draft(
        id="2026-W48",
        path=Path("drafts/2026-W48"),
        subject="Chrysanthemum Digest 2026-W48 今週の注目記事: トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮",
        preheader="トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮…",
        html=HTML,
        text=TEXT,
        content_hash="",
        created_at="2026-11-23T09:00:00+00:00",
        articles=(
            {
                "title": "トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮…私たちの未来はどうなる?",
                "url": "https://chrysanthemum-digest.example.jp/articles/trump-reelection",
                "published": "2025-02-20",
                "category": "国際",
            },
        ),
    )
    draft = replace(base, **changes)
    digest = content_hash(subject=draft.subject, html=draft.html, text=draft.text)
    return replace(draft, content_hash=changes.get("content_hash", digest))


SAMPLE_DRAFT = make_draft()


def write_draft_folder(root: Path, draft: Draft = SAMPLE_DRAFT) -> Path:
    """Save ``draft`` as drafts/<id>/ the way compose does, for CLI tests that need a small
    message (the real template renders ~1,000 lines, which the test server parses slowly)."""
    import json

    folder = root / "drafts" / draft.id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(draft.html, encoding="utf-8")
    (folder / "index.txt").write_text(draft.text, encoding="utf-8")
    meta = {
        "id": draft.id,
        "subject": draft.subject,
        "preheader": draft.preheader,
        "content_hash": draft.content_hash,
        "created_at": draft.created_at,
        "articles": list(draft.articles),
    }
    (folder / "edition.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return folder
