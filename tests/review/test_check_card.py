# ruff: noqa: E501  (exact messages are long lines on purpose)
"""``check`` on what disappoints in a card: no lead nor points, fields the templates do not
show, an all-capitals subject, images that do not load, SpamAssassin's own score."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from compose_samples import replace_field
from conftest import Runner, use_own_identity
from digest_mail.content.edition import default_edition_id
from digest_mail.review.probes import fetch_image, subject_all_caps

EDITION = default_edition_id(dt.date.today())
KYOTO = "articles/kyoto-crafts-successors.md"
HEAT = "articles/heatwave-elderly-care.md"


@pytest.fixture(autouse=True)
def _own_identity(request: pytest.FixtureRequest) -> None:
    # These tests are about the draft; the sample identity's warning has tests of its own.
    if "workspace" in request.fixturenames:
        use_own_identity(request.getfixturevalue("workspace"))


def _findings(result_output: str) -> list[str]:
    return [line for line in result_output.splitlines() if line.startswith("  ")]


def test_a_card_with_neither_lead_nor_points_is_a_warning(workspace: Path, run: Runner) -> None:
    replace_field(workspace / KYOTO, "lead:", None)
    assert run("compose", KYOTO, HEAT).exit_code == 0
    result = run("check", "--no-spamassassin")
    assert result.exit_code == 0
    assert _findings(result.output) == [
        "  warning: card: articles/kyoto-crafts-successors.md: the card has neither a lead nor 💡 points, only its title (add 'lead:' or 'points:' to the front matter)"
    ]


def test_fields_the_templates_do_not_show_are_named(workspace: Path, run: Runner) -> None:
    # An override that drops the source cards' ✅ points.
    partial = workspace / "templates" / "email" / "partials" / "article.mjml.j2"
    text = partial.read_text(encoding="utf-8")
    assert not partial.is_symlink()  # the test workspace holds a copy of the templates
    partial.write_text(text.replace('<p class="chk">✅ {{ point }}</p>', ""), encoding="utf-8")
    text_partial = workspace / "templates" / "email" / "partials" / "article.txt.j2"
    text_partial.write_text(
        text_partial.read_text(encoding="utf-8").replace(
            '{{ ("✅ " ~ point) | wrap(text_width, "  ", "     ") }}', ""
        ),
        encoding="utf-8",
    )
    assert run("compose", HEAT).exit_code == 0
    result = run("check", "--no-spamassassin")
    assert _findings(result.output) == [
        "  warning: unshown: articles/heatwave-elderly-care.md: the templates do not show sources[0].points"
    ]


def test_sources_as_links_do_not_show_the_points_and_check_says_so(
    workspace: Path, run: Runner
) -> None:
    config = workspace / "digest-mail.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace('sources = "cards"', 'sources = "links"'),
        encoding="utf-8",
    )
    assert run("compose", HEAT).exit_code == 0
    result = run("check", "--no-spamassassin")
    assert _findings(result.output) == [
        '  warning: unshown: articles/heatwave-elderly-care.md: the templates do not show sources[0].points ([edition] sources = "links")'
    ]


@pytest.mark.parametrize(
    ("subject", "fires"),
    [
        ("2026-W48 特集号", True),  # the README's own --subject "{edition} 特集号"
        ("NEWS 2026-W48 特集号", True),
        ("Chrysanthemum Digest 2026-W48 今週の注目記事", False),
        ("2026-W48特集号です", False),  # one word: SpamAssassin skips it
        ("W48 特集", False),  # under 10 characters
        ("2026年 今週の注目記事です", False),  # no Latin letter at all
        ("Re: 2026-W48 特集号", True),
    ],
)
def test_subject_all_caps_follows_spamassassins_rule(subject: str, fires: bool) -> None:
    assert subject_all_caps(subject) is fires


def test_an_all_capitals_subject_is_a_warning(workspace: Path, run: Runner) -> None:
    assert run("compose", HEAT, "--subject", "{edition} 特集号").exit_code == 0
    result = run("check", "--no-spamassassin")
    assert _findings(result.output) == [
        f"  warning: subject-caps: the subject '{EDITION} 特集号' has only capital Latin letters: SpamAssassin's SUBJ_ALL_CAPS adds 0.5 (add a lower-case word, e.g. the newsletter's name)"
    ]


class _Images(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/ok.jpg":
            body, kind, status = b"\xff\xd8\xff\xe0" + b"\0" * 64, "image/jpeg", 200
        elif self.path == "/page.jpg":
            body, kind, status = b"<html></html>", "text/html", 200
        else:
            body, kind, status = b"not found", "text/plain", 404
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetch_image_tells_a_missing_image_and_a_page_from_an_image(image_server: str) -> None:
    assert fetch_image(f"{image_server}/ok.jpg") is None
    assert fetch_image(f"{image_server}/missing.jpg") == "HTTP 404"
    assert fetch_image(f"{image_server}/page.jpg") == "it is text/html, not an image"


def test_a_host_that_refuses_is_a_problem_of_the_url_not_an_offline_network() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    problem = fetch_image(f"http://127.0.0.1:{port}/x.jpg", timeout=5)
    assert problem is not None and "refused" in problem.lower()


def test_check_fetch_images_warns_about_an_image_that_does_not_load(
    workspace: Path, run: Runner, image_server: str
) -> None:
    assert run("compose", HEAT).exit_code == 0
    page = workspace / "drafts" / EDITION / "index.html"
    src = "https://chrysanthemum-digest.example.jp/images/heatwave-elderly-care.jpg"
    page.write_text(
        page.read_text(encoding="utf-8").replace(src, f"{image_server}/missing.jpg"),
        encoding="utf-8",
    )
    result = run("check", "--no-spamassassin", "--fetch-images")
    assert f"  warning: image-load: image {image_server}/missing.jpg does not load: HTTP 404" in (
        result.output.splitlines()
    )
    # Without --fetch-images nothing is fetched: a check never reaches out by surprise.
    quiet = run("check", "--no-spamassassin")
    assert "image-load" not in quiet.output


SPAMASSASSIN = shutil.which("spamassassin")
needs_spamassassin = pytest.mark.skipif(
    SPAMASSASSIN is None,
    reason="spamassassin is not installed (Debian spamassassin; make system-deps installs it)",
)


@needs_spamassassin
def test_the_sample_edition_scores_at_most_0_with_spamassassin(
    workspace: Path, run: Runner
) -> None:
    assert (
        run(
            "compose",
            *sorted(str(p.relative_to(workspace)) for p in (workspace / "articles").glob("*.md")),
        ).exit_code
        == 0
    )
    result = run("check", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    spam = report["spamassassin"]
    assert spam is not None
    assert spam["score"] <= 0, spam
    assert "HTML_MESSAGE" in spam["rules"]
    assert report["findings"] == []


@needs_spamassassin
def test_check_reports_the_rules_spamassassin_hits(workspace: Path, run: Runner) -> None:
    assert run("compose", HEAT, "--subject", "{edition} 特集号").exit_code == 0
    result = run("check")
    spam_lines = [line for line in result.output.splitlines() if "SpamAssassin score" in line]
    assert len(spam_lines) == 1
    assert spam_lines[0].startswith("  warning: spamassassin: SpamAssassin score 0.5 (")
    assert "SUBJ_ALL_CAPS +0.5" in spam_lines[0]
    assert any(
        line.startswith("  spamassassin: score 0.5 (") for line in result.output.splitlines()
    )


def test_spamassassin_asked_for_but_missing_is_an_error(
    workspace: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("compose", HEAT).exit_code == 0
    monkeypatch.setenv("PATH", str(workspace / "no-such-bin"))
    result = run("check", "--spamassassin")
    assert (result.exit_code, result.output) == (
        1,
        "Error: spamassassin is not installed\nHint: apt-get install spamassassin\n",
    )
