"""The live preview's save-to-screen time: an article saved on disk until its new title
shows in the open page's frames (``digest-mail preview --serve``, issue 19).

    .venv/bin/python benchmarks/bench_liveview.py [--rounds 10] [--articles 6] [--screenshots DIR]

Copies the sample workspace to a temporary folder, composes it, starts the command as a
subprocess on 127.0.0.1 port 0 and opens the page in Debian's Chromium with Playwright
(nothing downloaded; remote images blocked). Each round rewrites one article's title and
waits until both frames show it; the figure is the wall time from the write to that
moment, and the command's own compose time for the round. ``--screenshots`` also saves
the page at both widths in light and dark, and the plain-text tab, as PNGs. Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import copy_workspace  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
SHOWN = """title => ["frame-375", "frame-600"].every(id => {
    const doc = document.getElementById(id).contentDocument;
    return doc && doc.body && doc.body.innerText.includes(title);
})"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--articles", type=int, default=6)
    parser.add_argument("--screenshots", type=Path, default=None)
    options = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="digest-mail-bench-live-") as tmp:
        root = copy_workspace(Path(tmp) / "ws")
        articles = sorted((root / "articles").glob("*.md"))[: options.articles]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAIL_")}
        command = [sys.executable, "-m", "digest_mail"]
        subprocess.run([*command, "compose", *map(str, articles)], cwd=root, env=env, check=True)
        server = subprocess.Popen(
            [*command, "preview", "--serve", "--port", "0"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        url = re.search(r"http://\S+", server.stdout.readline())
        assert url, "the server printed no URL"
        server.stdout.readline()
        server.stdout.readline()  # the compose at the start
        target = articles[0]
        original = target.read_text(encoding="utf-8")
        old_title = re.search(r"^title: (.*)$", original, re.M)
        assert old_title
        saves: list[float] = []
        composes: list[float] = []
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.route(
                    re.compile(r"^(?!http://127\.0\.0\.1:\d+/).*"),
                    lambda route: route.abort("blockedbyclient"),
                )
                page.goto(url.group())
                page.wait_for_function(SHOWN, arg=old_title.group(1), timeout=60_000)
                for round_ in range(options.rounds):
                    title = f"【第{round_ + 1}版】{old_title.group(1)}"
                    started = time.perf_counter()
                    target.write_text(
                        original.replace(old_title.group(0), f"title: {title}", 1),
                        encoding="utf-8",
                    )
                    page.wait_for_function(SHOWN, arg=title, timeout=60_000, polling=10)
                    saves.append(time.perf_counter() - started)
                    line = server.stdout.readline()
                    found = re.search(r"in ([\d.]+) s", line)
                    if found:
                        composes.append(float(found.group(1)))
                if options.screenshots:
                    shoot(page, options.screenshots)
                browser.close()
        finally:
            target.write_text(original, encoding="utf-8")
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=60)
    print(f"live preview, {len(articles)} articles, {options.rounds} saves")
    print(
        f"  save → both frames show it: median {statistics.median(saves) * 1000:.0f} ms, "
        f"min {min(saves) * 1000:.0f} ms, max {max(saves) * 1000:.0f} ms"
    )
    if composes:
        print(
            f"  of which compose (render once, write the draft, check): median "
            f"{statistics.median(composes) * 1000:.0f} ms"
        )


def shoot(page: object, folder: Path) -> None:
    from playwright.sync_api import Page

    assert isinstance(page, Page)
    folder.mkdir(parents=True, exist_ok=True)
    for mode in ("light", "dark"):
        page.click(f"#mode-{mode}")
        page.wait_for_function(
            """mode => ["frame-375", "frame-600"].every(id => {
                const frame = document.getElementById(id);
                return frame.dataset.loaded && frame.dataset.loaded.startsWith(`/frame/${mode}`);
            })""",
            arg=mode,
        )
        page.screenshot(path=str(folder / f"live-{mode}.png"))
        page.screenshot(path=str(folder / f"live-{mode}-full.png"), full_page=True)
        print(f"  {folder / f'live-{mode}.png'} (and -full.png: the whole page)")
    page.click("#mode-light")
    page.click("#tab-text")
    page.screenshot(path=str(folder / "live-text.png"))
    print(f"  {folder / 'live-text.png'}")
    page.click("#tab-html")


if __name__ == "__main__":
    main()
