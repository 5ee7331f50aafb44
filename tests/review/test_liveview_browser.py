"""``preview --serve`` in a real browser: Playwright drives Debian's Chromium (nothing is
downloaded) against the command running as a subprocess on 127.0.0.1 port 0."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from conftest import Runner
from digest_mail.content.edition import default_edition_id

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The email's images are remote: this machine reaches nothing but loopback.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
EDITION = default_edition_id(dt.date.today())
ARTICLES = (
    "articles/diet-election-reform.md",
    "articles/kyoto-crafts-successors.md",
    "articles/heatwave-elderly-care.md",
)
FIRST_TITLE = "衆院の選挙制度改革、何が変わる?「一票の格差」と定数削減をめぐる与野党の攻防"
# A guard against a hang (milliseconds), never a measurement.
GUARD_MS = 60_000

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(), reason=f"{CHROMIUM} is not installed (make system-deps)"
    ),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Served:
    url: str
    workspace: Path
    process: subprocess.Popen[str]


@pytest.fixture
def served(workspace: Path, run: Runner) -> Iterator[Served]:
    """``digest-mail preview --serve --port 0`` on a composed copy of the sample."""
    assert run("compose", *ARTICLES).exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAIL_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "digest_mail", "preview", "--serve", "--port", "0"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        found = re.search(r"http://127\.0\.0\.1:\d+/", process.stdout.readline())
        assert found, process.stderr.read() if process.stderr else ""
        for _ in range(2):  # where it listens, then the compose at the start
            process.stdout.readline()
        yield Served(found.group(), workspace, process)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=GUARD_MS / 1000)
        assert (process.returncode, out.splitlines()[-1:], err) == (0, ["stopped"], "")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    opened.set_default_timeout(GUARD_MS)
    # Only the preview's own server is reached; the email's remote images are not.
    opened.route(
        re.compile(r"^(?!http://127\.0\.0\.1:\d+/).*"), lambda route: route.abort("blockedbyclient")
    )
    opened.goto(served.url)
    try:
        yield opened
    finally:
        context.close()


def frames_loaded(page: Page, mode: str = "light") -> None:
    """Wait until both frames show what they were last asked for, in ``mode``."""
    page.wait_for_function(
        """mode => ["frame-375", "frame-600"].every(id => {
            const frame = document.getElementById(id);
            return frame.dataset.url && frame.dataset.url.startsWith(`/frame/${mode}.html`)
                && frame.dataset.loaded === frame.dataset.url;
        })""",
        arg=mode,
    )


def frame_metrics(page: Page, frame_id: str) -> dict[str, object]:
    result: dict[str, object] = page.evaluate(
        """id => {
            const doc = document.getElementById(id).contentDocument;
            return {
                scrollWidth: doc.documentElement.scrollWidth,
                clientWidth: doc.documentElement.clientWidth,
                background: getComputedStyle(doc.body).backgroundColor,
                text: doc.body.innerText,
            };
        }""",
        frame_id,
    )
    return result


def edit_title(workspace: Path, old: str, new: str) -> str:
    path = workspace / ARTICLES[0]
    before = path.read_text(encoding="utf-8")
    path.write_text(before.replace(f"title: {old}", f"title: {new}", 1), encoding="utf-8")
    return before


def test_the_page_shows_the_edition_as_sent_at_phone_and_desktop_width(page: Page) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#subject")).to_have_text(f"Chrysanthemum Digest {EDITION} 今週の注目記事")
    expect(page.locator("#sender")).to_have_text("Chrysanthemum Digest")
    expect(page.locator("#preheader")).to_contain_text("注目記事を、要点とあわせて")
    expect(page.locator("#link")).to_have_text("live")
    expect(page.locator("#verdict")).to_have_text(re.compile(r"^OK: 0 errors, \d+ warnings$"))
    expect(page.locator("#reader option:checked")).to_have_text("編集部 <editors@example.jp>")
    frames_loaded(page)
    for frame_id, width in (("frame-375", 375), ("frame-600", 600)):
        metrics = frame_metrics(page, frame_id)
        assert metrics["clientWidth"] == width
        assert isinstance(metrics["scrollWidth"], int) and metrics["scrollWidth"] <= width
        assert FIRST_TITLE in str(metrics["text"])
        assert "編集部" in str(metrics["text"]) and "@@" not in str(metrics["text"])


def test_the_dark_switch_shows_the_email_s_dark_scheme(page: Page) -> None:
    frames_loaded(page)
    light = {f: frame_metrics(page, f)["background"] for f in ("frame-375", "frame-600")}
    page.click("#mode-dark")
    frames_loaded(page, "dark")
    dark = {f: frame_metrics(page, f)["background"] for f in ("frame-375", "frame-600")}
    for frame_id in light:
        assert dark[frame_id] != light[frame_id]
        channels = [int(c) for c in re.findall(r"\d+", str(dark[frame_id]))[:3]]
        assert len(channels) == 3 and max(channels) < 64, dark[frame_id]  # a dark colour
    page.click("#mode-light")
    frames_loaded(page, "light")
    assert frame_metrics(page, "frame-600")["background"] == light["frame-600"]


def test_a_save_shows_on_the_open_page_and_a_mistake_shows_compose_s_error(
    page: Page, served: Served, run: Runner
) -> None:
    from playwright.sync_api import expect

    frames_loaded(page)
    page.evaluate("window.notReloaded = true")
    phone = page.frame_locator("#frame-375").locator("body")
    desktop = page.frame_locator("#frame-600").locator("body")

    edit_title(served.workspace, FIRST_TITLE, "見出しを変えました")
    expect(desktop).to_contain_text("見出しを変えました")
    expect(phone).to_contain_text("見出しを変えました")
    expect(page.locator("#articles li").first).to_have_text("見出しを変えました")

    path = served.workspace / ARTICLES[0]
    good = path.read_text(encoding="utf-8")
    path.write_text(good.replace("\ncategory: 政治\n", "\ncategory: [政治\n", 1), encoding="utf-8")
    expected = run("compose", *ARTICLES)
    assert expected.exit_code == 1
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-lines")).to_have_text(expected.output.rstrip("\n"))
    expect(desktop).to_contain_text("見出しを変えました")  # the last good render stays

    fixed = good.replace("title: 見出しを変えました", "title: 直しました")
    path.write_text(fixed, encoding="utf-8")
    expect(desktop).to_contain_text("直しました")
    expect(page.locator("#error")).to_be_hidden()
    assert page.evaluate("window.notReloaded") is True


def test_the_reader_picker_fills_in_a_reader_of_the_chosen_list(page: Page) -> None:
    from playwright.sync_api import expect

    frames_loaded(page)
    page.select_option("#list", label="weekly")
    expect(page.locator("#reader option").nth(1)).to_have_text(
        "鈴木 花子 <suzuki.hanako@example.com>"
    )
    page.select_option("#reader", index=1)
    expect(page.frame_locator("#frame-600").locator("body")).to_contain_text("鈴木 花子")
    expect(page.locator("#composed")).to_have_attribute(
        "title", re.compile("to 鈴木 花子 <suzuki.hanako@example.com>$")
    )


def test_the_plain_text_tab_marks_72_columns(page: Page) -> None:
    from playwright.sync_api import expect

    page.click("#tab-text")
    expect(page.locator("#text-view")).to_be_visible()
    expect(page.locator("#html-view")).to_be_hidden()
    expect(page.locator("#text")).to_contain_text("■ 衆院の選挙制度改革、何が変わる?")
    expect(page.locator("#text")).to_contain_text("編集部")
    geometry = page.evaluate(
        """() => {
            const probe = document.createElement("span");
            probe.textContent = "0".repeat(72);
            document.getElementById("text").append(probe);
            const ruler = document.getElementById("ruler");
            const pre = document.getElementById("text");
            const result = {
                columns: probe.getBoundingClientRect().width,
                ruler: ruler.getBoundingClientRect().left - pre.getBoundingClientRect().left,
                font: getComputedStyle(pre).fontFamily,
            };
            probe.remove();
            return result;
        }"""
    )
    assert abs(geometry["ruler"] - (12 + geometry["columns"])) <= 1, geometry
    assert "monospace" in geometry["font"]
