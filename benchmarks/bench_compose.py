"""Compose time for a 10-article edition: in-process (median, per stage) and as a CLI process.

    .venv/bin/python benchmarks/bench_compose.py [--runs 15]

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from digest_mail.config import find_workspace
from digest_mail.content.articles import load_articles
from digest_mail.content.edition import build_edition
from digest_mail.render.compose import compose
from digest_mail.render.renderer import (
    HTML_TEMPLATE,
    TEXT_TEMPLATE,
    inline_css,
    make_environment,
    mjml_to_html,
    render_edition,
    template_context,
)

REPO = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 11, 25)


def make_workspace(root: Path, count: int) -> list[Path]:
    """The sample workspace with ``count`` articles (the samples, repeated under new slugs)."""
    shutil.copy2(REPO / "digest-mail.toml", root / "digest-mail.toml")
    articles = root / "articles"
    articles.mkdir()
    samples = sorted((REPO / "articles").glob("*.md"))
    paths = []
    for n in range(count):
        source = samples[n % len(samples)]
        text = source.read_text(encoding="utf-8")
        url_line = next(line for line in text.splitlines() if line.startswith("url: "))
        text = text.replace(url_line, f"{url_line}-{n:02d}", 1)
        target = articles / f"{n:02d}-{source.name}"
        target.write_text(text, encoding="utf-8")
        paths.append(target)
    return paths


def median_ms(func: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--articles", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-compose-") as tmp:
        root = Path(tmp)
        paths = make_workspace(root, args.articles)
        workspace = find_workspace(root)
        settings = workspace.settings
        articles = load_articles(paths)
        edition = build_edition(articles, settings=settings, today=TODAY)
        env = make_environment(workspace.templates_dir)
        context = template_context(edition, settings)
        mjml = env.get_template(HTML_TEMPLATE).render(context)
        raw_html = mjml_to_html(mjml)

        compose(workspace, paths, today=TODAY)  # warm-up: imports, template compilation
        draft = compose(workspace, paths, today=TODAY)
        stages = {
            "load articles": lambda: load_articles(paths),
            "jinja2 → MJML": lambda: env.get_template(HTML_TEMPLATE).render(context),
            "mjml2html": lambda: mjml_to_html(mjml),
            "premailer inline": lambda: inline_css(raw_html),
            "text part": lambda: env.get_template(TEXT_TEMPLATE).render(context),
            "render_edition": lambda: render_edition(
                edition, settings=settings, templates_dir=workspace.templates_dir
            ),
            "compose (all, writes draft)": lambda: compose(workspace, paths, today=TODAY),
        }
        print(f"compose benchmark: {args.articles} articles, median of {args.runs} runs")
        print(
            f"  edition: HTML {draft.html_bytes / 1024:.1f} KB "
            f"(Gmail clips at 102 KB), text {draft.text_lines} lines"
        )
        for name, func in stages.items():
            print(f"  {name:<30} {median_ms(func, args.runs):8.1f} ms")

        cli_runs = max(3, args.runs // 3)
        command = [
            sys.executable,
            "-m",
            "digest_mail",
            "--workspace",
            str(root),
            "compose",
            *map(str, paths),
        ]
        cli_ms = median_ms(
            lambda: subprocess.run(command, check=True, capture_output=True), cli_runs
        )
        print(f"  {'CLI process (python -m ...)':<30} {cli_ms:8.1f} ms  (median of {cli_runs})")


if __name__ == "__main__":
    main()
