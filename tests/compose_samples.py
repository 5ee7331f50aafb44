"""Article files for compose tests, in the shape of the site's real articles."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

ARTICLE = """\
---
title: {title}
url: {url}
published: {published}
lead: 専門家の分析から、世界の不安定化と新たなリスクを探る。私たちの暮らしへの影響を読み解く。
category: {category}
points:
  - トランプ氏の再選は、米国の外交政策を大きく変え、国際社会に大きな影響を与える可能性があります。
  - 核軍縮の停滞や、北朝鮮問題への新たなアプローチなど、世界の安全保障環境に変化が予想されます。
  - 同盟国との関係にも変化が生じ、日本の安全保障環境にも影響を及ぼす可能性があります。
sources:
  - title: 米国、完全非核化から北朝鮮に譲歩か現実的な核開発凍結案が浮上
    url: https://mainichi.jp/articles/20190726/k00/00m/030/248000c
    published: 2019-07-26
---

## 北極星なき外交

北朝鮮問題におけるトランプ氏の姿勢と、日本の安全保障への影響について解説します。
"""


def write_article(
    folder: Path,
    slug: str,
    *,
    title: str | None = None,
    published: dt.date | str = dt.date(2026, 11, 20),
    category: str = "国際",
    url: str | None = None,
) -> Path:
    """An article file ``folder/slug.md``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug}.md"
    path.write_text(
        ARTICLE.format(
            title=title
            or f"トランプ再選で変わる世界? 核軍縮、同盟、北朝鮮…私たちの未来はどうなる?({slug})",
            url=url or f"https://chrysanthemum-digest.example.jp/articles/{slug}",
            published=published.isoformat() if isinstance(published, dt.date) else published,
            category=category,
        ),
        encoding="utf-8",
    )
    return path


def replace_field(path: Path, line_start: str, new_line: str | None) -> None:
    """Replace (or with None, delete) the front matter line starting with ``line_start``."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    out = []
    for line in lines:
        if line.startswith(line_start):
            if new_line is not None:
                out.append(new_line + "\n")
        else:
            out.append(line)
    path.write_text("".join(out), encoding="utf-8")


REAL_SHAPE = (
    Path(__file__).resolve().parent.parent / "articles" / "trump-reelection-world-security.md"
)


def write_budget_articles(
    folder: Path, *, count: int = 10, sources: int = 2, image: bool = True
) -> list[Path]:
    """The size budget's edition: ``count`` copies of the real-shape sample article (long
    title and lead, three 💡 points), each with its first ``sources`` sources (three ✅
    points each) and an image, under distinct URLs and dates (newest first by name)."""
    from digest_mail.content.articles import load_article

    sample = load_article(REAL_SHAPE)
    assert len(sample.sources) >= sources
    assert all(len(s.points) == 3 for s in sample.sources[:sources])
    paths = []
    for n in range(count):
        slug = f"budget-{n:02d}"
        lines = [
            "---",
            f"title: {sample.title}",
            f"url: {sample.url}-{n:02d}",
            f"published: {dt.date(2026, 11, 24) - dt.timedelta(days=n)}",
            f"lead: {sample.lead}",
            f"category: {sample.category}",
        ]
        if image:
            lines += [
                f"image: https://chrysanthemum-digest.example.jp/images/{slug}.jpg",
                "image_alt: 記者会見で話すトランプ氏",
            ]
        lines.append("points:")
        lines += [f"  - {p}" for p in sample.points]
        lines.append("sources:")
        for source in sample.sources[:sources]:
            lines += [f"  - title: '{source.title}'", f"    url: {source.url}"]
            if source.published:
                lines.append(f"    published: {source.published}")
            if source.publisher:
                lines.append(f"    publisher: {source.publisher}")
            lines.append("    points:")
            lines += [f"      - {p}" for p in source.points]
        lines += ["---", "", sample.body, ""]
        path = folder / f"{slug}.md"
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines), encoding="utf-8")
        paths.append(path)
    return paths
