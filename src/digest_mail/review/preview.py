"""Look at a draft: fill the placeholders with a sample reader, screenshot with Chromium.

Headless Chromium (Debian ``chromium``; ``fonts-noto-cjk`` or Japanese renders as boxes)
writes one PNG per width into ``drafts/<id>/preview/`` (and with ``dark`` one more per
width, with ``--force-dark-mode``: the page's prefers-color-scheme: dark rules apply, as
in a mail client that honours them; no browser download). The network is cut off
(``--host-resolver-rules``), so remote images show as their alt text, as in a mail
client that blocks images.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import shutil
import subprocess
import tempfile
import webbrowser
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from digest_mail.config import Settings
from digest_mail.errors import DigestMailError
from digest_mail.mail.placeholders import fill, sample_values
from digest_mail.render.draft import Draft

__all__ = [
    "ChromiumMissingError",
    "Screenshot",
    "find_chromium",
    "open_preview",
    "screenshot_draft",
]

DEFAULT_WIDTHS = (375, 600)
_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "apt-get install chromium fonts-noto-cjk"


class ChromiumMissingError(DigestMailError):
    def __init__(self) -> None:
        super().__init__(
            f"headless Chromium is not installed; to take screenshots run: {INSTALL_HINT}"
        )


@dataclass(frozen=True)
class Screenshot:
    width: int
    height: int
    path: Path
    dark: bool = False
    # Images that did not load at this width: the PNG shows a gap where readers see them.
    broken_images: tuple[str, ...] = ()


def find_chromium() -> str:
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise ChromiumMissingError()


def write_preview_html(draft: Draft, settings: Settings) -> Path:
    """``drafts/<id>/preview/preview.html``: the HTML part as a sample reader gets it."""
    folder = draft.path / "preview"
    folder.mkdir(exist_ok=True)
    page = fill(draft.html, sample_values(settings))
    target = folder / "preview.html"
    target.write_text(page, encoding="utf-8")
    return target


def _chromium_command(
    browser: str, profile: str, width: int, height: int, *action: str
) -> list[str]:
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        *action,
    ]


def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DigestMailError(f"Chromium took longer than {timeout:.0f}s") from None
    except OSError as exc:
        raise DigestMailError(f"Chromium could not start: {exc}", hint=INSTALL_HINT) from None


@dataclass(frozen=True)
class Layout:
    """What one Chromium pass found at each width: the page height, images not loaded."""

    heights: dict[int, int]
    broken_images: dict[int, tuple[str, ...]]


# Run in each width's iframe once it has loaded (images included, loaded or failed).
_PROBE = (
    "var d=this.contentDocument,b=document.body;"
    "b.setAttribute('data-height-{width}',String(d.documentElement.scrollHeight));"
    "b.setAttribute('data-broken-{width}',JSON.stringify(Array.from(d.images)"
    ".filter(function(i){{return i.complete&&i.naturalWidth===0}})"
    ".map(function(i){{return i.getAttribute('src')||''}})))"
)


def measure_layout(browser: str, page: Path, widths: Sequence[int], *, timeout: float) -> Layout:
    """The page's full height at each width (--screenshot captures the window only), and
    the images that did not load there (Chromium fetches nothing over the network here).

    One Chromium run lays the page out in an iframe per width: headless --dump-dom
    ignores --window-size below 500 px, and srcdoc keeps each iframe same-origin.
    """
    source = html.escape(page.read_text(encoding="utf-8"), quote=True)
    frames = "".join(
        f'<iframe style="width:{width}px;height:50px;border:0;display:block" '
        f'onload="{html.escape(_PROBE.format(width=width), quote=True)}" srcdoc="{source}">'
        "</iframe>"
        for width in widths
    )
    probe_page = f'<!doctype html><html><body style="margin:0">{frames}</body></html>'
    with tempfile.TemporaryDirectory(prefix="digest-mail-chromium-") as profile:
        probe = Path(profile) / "measure.html"
        probe.write_text(probe_page, encoding="utf-8")
        result = _run(
            _chromium_command(browser, profile, 800, 800, "--dump-dom", probe.as_uri()), timeout
        )
    heights = {}
    broken: dict[int, tuple[str, ...]] = {}
    for width in widths:
        match = re.search(rf'data-height-{width}="(\d+)"', result.stdout)
        if not match:
            detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise DigestMailError(f"Chromium could not lay out {page}: {detail}")
        heights[width] = max(200, min(int(match.group(1)), 30000))
        found = re.search(rf'data-broken-{width}="([^"]*)"', result.stdout)
        sources = json.loads(html.unescape(found.group(1))) if found else []
        broken[width] = tuple(dict.fromkeys(str(s) for s in sources))
    return Layout(heights=heights, broken_images=broken)


def measure_heights(
    browser: str, page: Path, widths: Sequence[int], *, timeout: float
) -> dict[int, int]:
    """The page's full height at each width (see :func:`measure_layout`)."""
    return measure_layout(browser, page, widths, timeout=timeout).heights


def screenshot_draft(
    draft: Draft,
    settings: Settings,
    *,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    height: int | None = None,
    chromium: str | None = None,
    timeout: float = 90.0,
    dark: bool = False,
) -> list[Screenshot]:
    """One full-page PNG per width in ``drafts/<id>/preview/``, placeholders filled.

    The screenshots run as parallel Chromium processes (about 3 s each otherwise).
    """
    widths = list(dict.fromkeys(widths))
    for width in widths:
        if not 200 <= width <= 2000:
            raise DigestMailError(
                f"--width {width} is out of range", hint="use 200 to 2000 pixels, e.g. 375"
            )
    browser = chromium or find_chromium()
    page = write_preview_html(draft, settings)
    # Measured even with --height: the same pass tells which images did not load.
    layout = measure_layout(browser, page, widths, timeout=timeout)
    heights = dict.fromkeys(widths, height) if height else layout.heights
    modes = [False, True] if dark else [False]
    with contextlib.ExitStack() as stack:
        running = []
        for width, in_dark in ((w, m) for w in widths for m in modes):
            profile = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="digest-mail-chromium-")
            )
            target = page.parent / f"preview-{width}{'-dark' if in_dark else ''}.png"
            target.unlink(missing_ok=True)
            command = _chromium_command(
                browser,
                profile,
                width,
                heights[width],
                *(["--force-dark-mode"] if in_dark else []),
                f"--screenshot={target}",
                page.resolve().as_uri(),
            )
            try:
                process = subprocess.Popen(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
                )
            except OSError as exc:
                raise DigestMailError(
                    f"Chromium could not start: {exc}", hint=INSTALL_HINT
                ) from None
            stack.callback(_reap, process)
            running.append((width, in_dark, target, process))
        shots = []
        for width, in_dark, target, process in running:
            try:
                _, stderr = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise DigestMailError(f"Chromium took longer than {timeout:.0f}s") from None
            if not target.is_file():
                detail = (stderr.strip().splitlines() or ["no output"])[-1]
                raise DigestMailError(f"Chromium wrote no screenshot at width {width}: {detail}")
            shots.append(
                Screenshot(
                    width=width,
                    height=heights[width],
                    path=target,
                    dark=in_dark,
                    broken_images=layout.broken_images.get(width, ()),
                )
            )
    return shots


def _reap(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def open_preview(draft: Draft, settings: Settings) -> Path:
    """Open the filled-in HTML in the default browser."""
    page = write_preview_html(draft, settings)
    if not webbrowser.open(page.resolve().as_uri()):
        raise DigestMailError(f"no browser could be started; open {page} yourself")
    return page
