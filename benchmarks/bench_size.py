"""Where the bytes of the HTML part go: the size budget of issue 16, by part of the card.

    .venv/bin/python benchmarks/bench_size.py [--templates DIR] [--articles 10]

Composes the budget edition (copies of the real-shape sample article, each with two
sources of three ✅ points, a lead, an image and three 💡 points) with the real MJML and
premailer, fills the placeholders with the longest values personalization may bring
(``check``'s upper bounds) and prints the HTML as sent. Each part's cost is measured by
leaving it out of every card and dividing the difference by the number of cards.
``--templates`` renders with a templates/email override folder instead of the packaged
templates (to compare a layout with another). Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import tempfile
from pathlib import Path

from digest_mail.config import Settings, load_settings
from digest_mail.content.articles import Article, load_articles
from digest_mail.content.edition import Edition, build_edition
from digest_mail.render.renderer import render_edition
from digest_mail.review.check import longest_values, sent_html

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from compose_samples import write_budget_articles  # noqa: E402


def sent_bytes(
    articles: list[Article], settings: Settings, templates: Path | None, *, base: Edition
) -> int:
    edition = dataclasses.replace(base, articles=tuple(articles))
    rendered = render_edition(edition, settings=settings, templates_dir=templates)
    page = sent_html(rendered.html, settings, longest_values(settings))
    return len(page.encode("utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--templates", type=Path, default=None)
    parser.add_argument("--articles", type=int, default=10)
    args = parser.parse_args()
    settings = load_settings(REPO / "digest-mail.toml", environ={})
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp:
        articles = load_articles(write_budget_articles(Path(tmp), count=args.articles))
    base = build_edition(articles, settings=settings, today=dt.date(2026, 11, 25))
    count = len(articles)

    def measure(change: dict[str, object], edition: dict[str, str] | None = None) -> int:
        chosen = settings
        if edition:
            chosen = dataclasses.replace(
                settings, edition=dataclasses.replace(settings.edition, **edition)
            )
        changed = [dataclasses.replace(a, **change) for a in articles]
        return sent_bytes(changed, chosen, args.templates, base=base)

    full = measure({})
    frame = sent_bytes([], settings, args.templates, base=base)
    parts = {
        "image": measure({"image": None, "image_alt": None}),
        "lead": measure({"lead": ""}),
        "sources (2 cards, 3 ✅ each)": measure({"sources": ()}),
        "🚩結論 (3 💡)": measure({"points": ()}),
    }
    links = measure({}, {"sources": "links"})
    print(f"templates: {args.templates or 'packaged'}; {count} articles, as sent (longest values)")
    print(f"{'part':<34}{'bytes':>9}{'per card':>10}")
    print(f"{'whole HTML part':<34}{full:>9,}{'':>10}")
    print(f"{'head, masthead, footer':<34}{frame:>9,}{'':>10}")
    rest = full - frame
    for name, without in parts.items():
        cost = full - without
        rest -= cost
        print(f"{name:<34}{cost:>9,}{cost / count:>10,.0f}")
    print(f"{'card frame, meta, title, button':<34}{rest:>9,}{rest / count:>10,.0f}")
    print(f"{'whole HTML, sources as links':<34}{links:>9,}{'':>10}")
    print(f"budget: {full / 1024:.1f} KB of 90 KB ({'under' if full < 90 * 1024 else 'OVER'})")


if __name__ == "__main__":
    main()
