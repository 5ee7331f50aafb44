"""``digest-mail preview``: full-page screenshots with the real headless Chromium."""

from __future__ import annotations

import datetime as dt
import shutil
import struct
import zlib
from pathlib import Path

import pytest

from conftest import Runner
from digest_mail.content.edition import default_edition_id

EDITION = default_edition_id(dt.date.today())
HAS_CHROMIUM = any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.chromium
@pytest.mark.skipif(not HAS_CHROMIUM, reason="headless Chromium is not installed")
def test_preview_writes_full_page_screenshots_at_phone_and_desktop_width(
    workspace: Path, run: Runner
) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    result = run("preview")
    assert result.exit_code == 0, result.output
    folder = workspace / "drafts" / EDITION / "preview"
    sizes = {width: _png_size(folder / f"preview-{width}.png") for width in (375, 600)}
    assert result.output == "".join(
        f"drafts/{EDITION}/preview/preview-{w}.png  ({w}×{h})\n" for w, (_, h) in sizes.items()
    )
    assert sizes[375][0] == 375 and sizes[600][0] == 600
    # One article: the phone layout is taller (narrower lines), and both hold the page.
    assert sizes[375][1] > sizes[600][1] > 500
    page = (folder / "preview.html").read_text(encoding="utf-8")
    assert "@@" not in page
    assert "山田 花子 さん、こんにちは。" in page


def test_without_chromium_the_error_says_what_to_install(workspace: Path, run: Runner) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    result = run("preview", EDITION, env={"PATH": str(workspace / "no-browsers-here")})
    assert (result.exit_code, result.output) == (
        1,
        "Error: headless Chromium is not installed; to take screenshots run: "
        "apt-get install chromium fonts-noto-cjk\n",
    )


def test_preview_rejects_absurd_widths(workspace: Path, run: Runner) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    result = run("preview", "--width", "375", "--width", "50")
    assert (result.exit_code, result.output) == (
        1,
        "Error: --width 50 is out of range\nHint: use 200 to 2000 pixels, e.g. 375\n",
    )
    assert not (workspace / "drafts" / EDITION / "preview").exists()


def _mean_brightness(path: Path) -> float:
    """Mean of R, G and B over the whole PNG (stdlib only: zlib and the PNG filters)."""
    data = path.read_bytes()
    width, height = _png_size(path)
    position, idat, channels = 8, b"", 0
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            assert body[8] == 8, "8-bit channels expected"
            channels = {2: 3, 6: 4}[body[9]]
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    previous = bytearray(stride)
    total = 0
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            corner = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 0xFF
        total += sum(v for i, v in enumerate(line) if i % channels < 3)
        previous = line
    return total / (width * height * 3)


@pytest.mark.chromium
@pytest.mark.skipif(not HAS_CHROMIUM, reason="headless Chromium is not installed")
def test_preview_dark_adds_a_dark_mode_screenshot_per_width(workspace: Path, run: Runner) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    result = run("preview", "--width", "375", "--dark")
    assert result.exit_code == 0, result.output
    folder = workspace / "drafts" / EDITION / "preview"
    light, dark = folder / "preview-375.png", folder / "preview-375-dark.png"
    height = _png_size(light)[1]
    assert _png_size(dark) == (375, height)
    assert result.output == (
        f"drafts/{EDITION}/preview/preview-375.png  (375×{height})\n"
        f"drafts/{EDITION}/preview/preview-375-dark.png  (375×{height}, dark)\n"
    )
    # The page's prefers-color-scheme: dark rules applied: a light page, a dark one.
    assert _mean_brightness(light) > 180
    assert _mean_brightness(dark) < 90


@pytest.mark.chromium
@pytest.mark.skipif(not HAS_CHROMIUM, reason="headless Chromium is not installed")
def test_preview_names_the_images_that_did_not_load(workspace: Path, run: Runner) -> None:
    # The editor's trap: the screenshot showed an empty box and nothing said why.
    assert run("compose", "articles/heatwave-elderly-care.md").exit_code == 0
    result = run("preview", "--width", "375")
    assert result.exit_code == 0, result.output
    image = "https://chrysanthemum-digest.example.jp/images/heatwave-elderly-care.jpg"
    assert result.output.splitlines()[1:] == [
        f"warning: image did not load in the preview: {image}",
        "  (the preview fetches nothing over the network: the screenshots show a gap there;"
        " open each URL in a browser to see that readers will get it)",
    ]


@pytest.mark.chromium
@pytest.mark.skipif(not HAS_CHROMIUM, reason="headless Chromium is not installed")
def test_preview_names_no_image_when_none_failed(workspace: Path, run: Runner) -> None:
    assert run("compose", "articles/kyoto-crafts-successors.md").exit_code == 0
    result = run("preview", "--width", "375", "--json")
    assert result.exit_code == 0, result.output
    assert '"broken_images": []' in result.output
