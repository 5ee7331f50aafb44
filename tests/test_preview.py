"""``digest-mail preview``: full-page screenshots with the real headless Chromium."""

from __future__ import annotations

import datetime as dt
import shutil
import struct
from pathlib import Path

import pytest

from conftest import Runner
from digest_mail.edition import default_edition_id

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
