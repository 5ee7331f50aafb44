"""``preview --serve`` without a browser: recomposition, the path rules, the event stream,
the reader picker, Ctrl-C. The page in Chromium: tests/review/test_liveview_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from conftest import Runner
from digest_mail.audience.unsubscribe import read_token, signing_key
from digest_mail.config import find_workspace
from digest_mail.content.edition import default_edition_id
from digest_mail.errors import DigestMailError
from digest_mail.render.draft import latest_draft
from digest_mail.review.liveserver import LiveInfo, check_loopback, run_live
from digest_mail.review.liveview import Composed, LiveSession, frame_html
from digest_mail.review.probes import find_spamassassin

EDITION = default_edition_id(dt.date.today())
ARTICLES = ("articles/diet-election-reform.md", "articles/kyoto-crafts-successors.md")
FIRST_TITLE = "衆院の選挙制度改革、何が変わる?「一票の格差」と定数削減をめぐる与野党の攻防"
# Guards against a hang, never a measurement: every wait below ends as soon as the
# awaited thing happens.
GUARD = 60.0


def edit_title(workspace: Path, new: str) -> None:
    path = workspace / ARTICLES[0]
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace(f"title: {FIRST_TITLE}", f"title: {new}", 1), encoding="utf-8")


def break_front_matter(workspace: Path) -> str:
    """A YAML mistake in the first article; returns the file as it was."""
    path = workspace / ARTICLES[0]
    before = path.read_text(encoding="utf-8")
    path.write_text(
        before.replace("\ncategory: 政治\n", "\ncategory: [政治\n", 1), encoding="utf-8"
    )
    return before


def compose_error(run: Runner) -> list[str]:
    """The lines 'digest-mail compose' prints for the workspace as it is."""
    result = run("compose", *ARTICLES)
    assert result.exit_code == 1
    return result.output.splitlines()


# --- the session: recomposition through compose ---------------------------------------


def test_compose_records_how_it_was_asked_so_the_draft_can_be_composed_again(
    workspace: Path, run: Runner
) -> None:
    assert run("compose", *ARTICLES, "--subject", "{edition} 特集").exit_code == 0
    meta = json.loads((workspace / "drafts" / EDITION / "edition.json").read_text("utf-8"))
    assert meta["compose"] == {
        "articles": list(ARTICLES),
        "since": None,
        "category": None,
        "subject": "{edition} 特集",
        "intro": None,
        "preheader": None,
    }
    session = LiveSession(find_workspace(workspace))
    edit_title(workspace, "新しい見出し")
    outcome = session.compose_now()
    assert isinstance(outcome, Composed)
    assert outcome.draft.subject == f"{EDITION} 特集"
    assert [a["title"] for a in outcome.draft.articles] == [
        "新しい見出し",
        latest_draft(find_workspace(workspace)).articles[1]["title"],
    ]
    assert latest_draft(find_workspace(workspace)).content_hash == outcome.draft.content_hash


def test_a_mistake_keeps_the_last_good_render_and_shows_compose_s_own_lines(
    workspace: Path, run: Runner
) -> None:
    assert run("compose", *ARTICLES).exit_code == 0
    session = LiveSession(find_workspace(workspace))
    good = session.compose_now()
    assert isinstance(good, Composed)
    before = break_front_matter(workspace)
    failed = session.compose_now()
    assert failed == tuple(compose_error(run))
    assert failed[0].startswith(f"Error: {ARTICLES[0]}:") and "not valid YAML" in failed[0]
    state = session.state(None, 0)
    assert state["error"] == list(failed)
    assert state["draft"]["articles"][0] == FIRST_TITLE
    assert session.good is good
    (workspace / ARTICLES[0]).write_text(before, encoding="utf-8")
    assert isinstance(session.compose_now(), Composed)
    assert session.state(None, 0)["error"] == []


def test_without_any_draft_it_composes_as_compose_would_and_shows_why_not(
    workspace: Path, run: Runner
) -> None:
    session = LiveSession(find_workspace(workspace))
    assert session.good is None and session.edition_id is None
    # The sample articles are older than [edition] since (7d) on most days.
    outcome = session.compose_now()
    plain = run("compose")
    if plain.exit_code == 0:
        assert isinstance(outcome, Composed) and outcome.draft.id == EDITION
    else:
        assert outcome == tuple(plain.output.splitlines())
        assert session.state(None, 0)["draft"] is None


def test_an_unknown_draft_is_refused_before_anything_listens(workspace: Path) -> None:
    with pytest.raises(DigestMailError, match="no draft 2001-W01"):
        LiveSession(find_workspace(workspace), "2001-W01")


def test_the_reader_picker_fills_the_placeholders_through_the_send_path(
    workspace: Path, run: Runner
) -> None:
    assert run("compose", *ARTICLES).exit_code == 0
    ws = find_workspace(workspace)
    session = LiveSession(ws)
    staff = session.state(None, 0)
    assert staff["lists"] == ["staff", "weekly"]
    assert staff["list"] == "staff"
    assert staff["readers"][:2] == [
        "編集部 <editors@example.jp>",
        "佐藤 美咲 <sato.misaki@example.jp>",
    ]
    weekly = session.state("weekly", 1)
    assert weekly["readers"][1] == "鈴木 花子 <suzuki.hanako@example.com>"
    draft = weekly["draft"]
    assert draft["to"] == "鈴木 花子 <suzuki.hanako@example.com>"
    assert draft["subject"] == f"Chrysanthemum Digest {EDITION} 今週の注目記事"
    assert draft["sender_name"] == "Chrysanthemum Digest"
    text = "\n".join(line["text"] for line in draft["text"])
    assert "鈴木 花子" in text and "@@" not in text and "\r" not in text
    # Only lines check would warn about are marked: the sample has none.
    assert [line for line in draft["text"] if line["over"]] == []
    page = session.frame("weekly", 1, dark=False)
    assert page is not None and "鈴木 花子" in page and "@@" not in page
    # The unsubscribe link is a test link: following it from a preview changes nothing.
    link = re.search(r"https://chrysanthemum-digest\.example\.jp/unsubscribe\?t=[\w.-]+", text)
    assert link is not None
    token = parse_qs(urlsplit(link.group()).query)["t"][0]
    found = read_token(signing_key(ws), token)
    assert (found.list_name, found.address, found.test) == (
        "weekly",
        "suzuki.hanako@example.com",
        True,
    )
    # A row past the readers offered, and an unknown list, fall back to the default.
    assert session.state("weekly", 999)["row"] == 0
    assert session.state("no-such-list", 0)["list"] == "staff"


def test_the_picker_reads_a_list_again_once_it_changed_and_names_a_broken_one(
    workspace: Path, run: Runner
) -> None:
    assert run("compose", *ARTICLES).exit_code == 0
    session = LiveSession(find_workspace(workspace))
    assert session.state(None, 0)["readers"][0] == "編集部 <editors@example.jp>"
    staff = workspace / "subscribers" / "staff.csv"
    header, *rows = staff.read_text(encoding="utf-8").splitlines()
    staff.write_text(
        "\n".join([header, "new.editor@example.jp,新人 編集者,subscribed,2026-12-01", *rows])
        + "\n",
        encoding="utf-8",
    )
    assert session.state(None, 0)["readers"][0] == "新人 編集者 <new.editor@example.jp>"
    staff.write_bytes(b"name,status\n\xe6\x96\xb0,subscribed\n")
    state = session.state(None, 0)
    assert state["sample_reader"] is True
    assert state["reader_error"][0].startswith("Error: subscribers/staff.csv")


def test_a_workspace_without_lists_previews_with_the_sample_reader(
    workspace: Path, run: Runner
) -> None:
    assert run("compose", *ARTICLES).exit_code == 0
    for csv in (workspace / "subscribers").glob("*.csv"):
        csv.unlink()
    state = LiveSession(find_workspace(workspace)).state(None, 0)
    assert state["lists"] == [] and state["sample_reader"] is True
    assert state["readers"] == ["山田 花子 <yamada.hanako@example.jp>"]


def test_the_dark_frame_forces_the_email_s_own_dark_rules() -> None:
    email = (
        "<html><head><style>@media (prefers-color-scheme: dark) { body { background: #111 } }"
        "@media (prefers-color-scheme:light) { body { background: #fff } }</style></head>"
        "<body></body></html>"
    )
    dark = frame_html(email, dark=True)
    assert "prefers-color-scheme" not in dark
    assert "@media (min-width: 0px) { body { background: #111 } }" in dark
    assert "@media (max-width: -1px) { body { background: #fff } }" in dark
    assert '<meta name="color-scheme" content="dark">' in dark
    light = frame_html(email, dark=False)
    assert light == email.replace("</head>", '<base target="_blank"></head>')


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts_are_accepted(host: str) -> None:
    check_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.jp", ""])
def test_other_hosts_are_refused(host: str) -> None:
    with pytest.raises(DigestMailError, match="loopback addresses only"):
        check_loopback(host)


# --- the server, in-process on 127.0.0.1 port 0 -----------------------------------------


@dataclass
class Live:
    info: LiveInfo
    session: LiveSession
    workspace: Path
    outcomes: asyncio.Queue[Composed | tuple[str, ...]] = field(default_factory=asyncio.Queue)

    @property
    def port(self) -> int:
        return self.info.port

    async def next_outcome(self) -> Composed | tuple[str, ...]:
        return await asyncio.wait_for(self.outcomes.get(), GUARD)


@contextlib.asynccontextmanager
async def start_live(workspace: Path, *, spamassassin: str | None = None) -> AsyncIterator[Live]:
    session = LiveSession(find_workspace(workspace))
    stop = asyncio.Event()
    ready: asyncio.Future[LiveInfo] = asyncio.get_running_loop().create_future()
    outcomes: asyncio.Queue[Composed | tuple[str, ...]] = asyncio.Queue()
    task = asyncio.create_task(
        run_live(
            session,
            host="127.0.0.1",
            port=0,
            spamassassin=spamassassin,
            on_ready=ready.set_result,
            on_event=lambda outcome, _paths: outcomes.put_nowait(outcome),
            stop=stop,
        )
    )
    await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED, timeout=GUARD)
    live = Live(ready.result(), session, workspace, outcomes)
    assert isinstance(await live.next_outcome(), Composed)  # the compose at the start
    try:
        yield live
    finally:
        stop.set()
        await asyncio.wait_for(task, GUARD)


@pytest.fixture
async def live(workspace: Path, run: Runner) -> AsyncIterator[Live]:
    assert run("compose", *ARTICLES).exit_code == 0
    async with start_live(workspace) as started:
        yield started


async def raw_get(port: int, target: str, *, host: str | None = None) -> tuple[int, bytes]:
    """One request written byte for byte: no client normalizes '..' on the way."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {target} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{port}'}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), GUARD)
    writer.close()
    return int(data.split(b" ", 2)[1]), data


async def test_the_page_its_assets_and_the_frames_are_served_with_a_strict_policy(
    live: Live,
) -> None:
    status, page = await raw_get(live.port, "/")
    assert status == 200
    assert b"Content-Security-Policy: default-src 'none'; script-src 'self';" in page
    assert b'<script src="/assets/page.js" defer></script>' in page
    for asset, kind in (("page.js", b"text/javascript"), ("page.css", b"text/css")):
        status, body = await raw_get(live.port, f"/assets/{asset}")
        assert status == 200 and b"Content-Type: " + kind in body
    for mode in ("light", "dark"):
        status, frame = await raw_get(live.port, f"/frame/{mode}.html?list=staff&row=1")
        assert status == 200
        assert b"frame-ancestors 'self'" in frame and b"script-src" not in frame
        assert "佐藤 美咲".encode() in frame and FIRST_TITLE.encode() in frame


SECRETS = (b"[newsletter]", b"editors@example.jp,", b"root:x:0:0", b"title: ")


@pytest.mark.parametrize(
    "target",
    [
        "/../digest-mail.toml",
        "/%2e%2e/digest-mail.toml",
        "/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
        "/assets/../../digest-mail.toml",
        "/assets/..%2f..%2fdigest-mail.toml",
        "/assets/%2e%2e%2f%2e%2e%2fsubscribers%2fstaff.csv",
        "/frame/..%2f..%2fdigest-mail.toml",
        "/frame/light.html/../../../digest-mail.toml",
        "//etc/passwd",
        "/etc/passwd",
        "/digest-mail.toml",
        "/subscribers/staff.csv",
        "/articles/",
        "/articles/diet-election-reform.md",
        "/drafts/",
        f"/drafts/{EDITION}/index.html",
        "/assets/",
        "/leak",
        f"/drafts/{EDITION}/leak.txt",
        "/assets/leak",
        "http://127.0.0.1/../digest-mail.toml",
        "/frame/light.html%00.toml",
    ],
)
async def test_nothing_but_the_preview_is_served(live: Live, target: str) -> None:
    # Symlinks to a secret outside the workspace, where a file server might follow them.
    (live.workspace / "leak").symlink_to("/etc/passwd")
    (live.workspace / "drafts" / EDITION / "leak.txt").symlink_to(
        live.workspace / "digest-mail.toml"
    )
    status, response = await raw_get(live.port, target)
    assert status in (400, 403, 404), response[:200]
    assert not any(secret in response for secret in SECRETS)


async def test_a_foreign_host_header_is_refused(live: Live) -> None:
    # A page of another site rebinding its name to 127.0.0.1 sends its own Host.
    status, _ = await raw_get(live.port, "/state.json", host=f"attacker.example:{live.port}")
    assert status == 403
    status, _ = await raw_get(live.port, "/state.json", host=f"localhost:{live.port}")
    assert status == 200


async def test_only_get_is_answered(live: Live) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{live.port}/", data=b"x" * 100) as response:
            assert response.status == 405
        async with http.post(
            f"http://127.0.0.1:{live.port}/state.json", data=b"x" * 100_000
        ) as response:
            assert response.status in (405, 413)


async def _next_update(stream: aiohttp.StreamReader) -> int:
    while True:
        line = await asyncio.wait_for(stream.readline(), GUARD)
        if line.startswith(b"data: "):
            return int(line[6:])


async def test_a_save_recomposes_and_tells_the_open_page(live: Live, run: Runner) -> None:
    base = f"http://127.0.0.1:{live.port}"
    async with aiohttp.ClientSession() as http, http.get(f"{base}/events") as events:
        assert events.headers["Content-Type"] == "text/event-stream"
        first = await _next_update(events.content)
        edit_title(live.workspace, "見出しを変えました")
        assert isinstance(await live.next_outcome(), Composed)
        second = await _next_update(events.content)
        assert second > first
        async with http.get(f"{base}/state.json") as response:
            state = await response.json()
        assert state["draft"]["articles"][0] == "見出しを変えました" and state["error"] == []

        before = break_front_matter(live.workspace)
        assert isinstance(await live.next_outcome(), tuple)
        assert await _next_update(events.content) > second
        async with http.get(f"{base}/state.json") as response:
            state = await response.json()
        assert state["error"] == compose_error(run)
        assert state["draft"]["articles"][0] == "見出しを変えました"
        async with http.get(f"{base}/frame/light.html") as response:
            assert "見出しを変えました" in await response.text()

        (live.workspace / ARTICLES[0]).write_text(
            before.replace("title: 見出しを変えました", "title: 直しました"), encoding="utf-8"
        )
        assert isinstance(await live.next_outcome(), Composed)
        async with http.get(f"{base}/state.json") as response:
            state = await response.json()
        assert state["error"] == [] and state["draft"]["articles"][0] == "直しました"


async def test_the_settings_file_is_watched_too(live: Live) -> None:
    config = live.workspace / "digest-mail.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("{edition} 今週の注目記事", "{edition} 号外"), encoding="utf-8")
    outcome = await live.next_outcome()
    assert isinstance(outcome, Composed)
    assert outcome.draft.subject == f"Chrysanthemum Digest {EDITION} 号外"
    config.write_text(text.replace('url = "capture"', 'url = "capture'), encoding="utf-8")
    failed = await live.next_outcome()
    assert isinstance(failed, tuple) and failed[0].startswith("Error: ")
    assert live.session.good is not None and live.session.good.draft.subject.endswith("号外")


async def test_a_template_saved_recomposes(live: Live) -> None:
    template = live.workspace / "templates/email/digest.txt.j2"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("お問い合わせ:", "ご連絡先:"), encoding="utf-8")
    outcome = await live.next_outcome()
    assert isinstance(outcome, Composed) and "ご連絡先: editors@example.jp" in outcome.draft.text


async def test_a_templates_folder_that_appears_later_is_watched(
    workspace: Path, run: Runner, tmp_path: Path
) -> None:
    packaged = workspace / "templates"
    outside = shutil.move(packaged, tmp_path / "templates")
    assert run("compose", *ARTICLES).exit_code == 0
    async with start_live(workspace) as live:
        shutil.move(outside, packaged)
        assert isinstance(await live.next_outcome(), Composed)
        # The new folder is watched from now on: a save inside it recomposes.
        template = packaged / "email/digest.txt.j2"
        text = template.read_text(encoding="utf-8")
        template.write_text(text.replace("お問い合わせ:", "ご連絡先:"), encoding="utf-8")
        while True:
            outcome = await live.next_outcome()
            assert isinstance(outcome, Composed)
            if "ご連絡先:" in outcome.draft.text:
                break


@pytest.mark.slow
@pytest.mark.skipif(find_spamassassin() is None, reason="SpamAssassin is not installed")
async def test_spamassassin_scores_each_render_in_the_background(
    workspace: Path, run: Runner
) -> None:
    assert run("compose", *ARTICLES).exit_code == 0
    async with start_live(workspace, spamassassin=find_spamassassin()) as live:
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{live.port}"
            async with http.get(f"{url}/events") as events:
                while True:
                    await _next_update(events.content)
                    async with http.get(f"{url}/state.json") as response:
                        spam = (await response.json())["draft"]["spam"]
                    if spam["state"] != "pending":
                        break
        assert spam["state"] == "done", spam
        assert isinstance(spam["score"], float) and spam["describe"]


# --- the command --------------------------------------------------------------------------


def test_serve_refuses_the_screenshot_options(workspace: Path, run: Runner) -> None:
    result = run("preview", "--serve", "--open", "--dark")
    assert result.exit_code == 2
    assert result.output.endswith("Error: --serve cannot be combined with --open, --dark\n")


def test_serve_names_an_unknown_draft(workspace: Path, run: Runner) -> None:
    result = run("preview", "--serve", "2001-W01")
    assert result.exit_code == 1
    assert result.output.startswith("Error: no draft 2001-W01 in drafts/")


def test_the_command_says_where_it_listens_and_ctrl_c_stops_it_cleanly(
    workspace: Path, run: Runner
) -> None:
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
        first = process.stdout.readline()
        match = re.fullmatch(rf"Live preview of {EDITION}: http://127\.0\.0\.1:(\d+)/\n", first)
        assert match, first
        assert process.stdout.readline() == (
            "  listening on 127.0.0.1 only (this machine); watching articles/, "
            "templates/email/, digest-mail.toml; Ctrl-C stops\n"
        )
        composed = process.stdout.readline()
        assert re.fullmatch(
            rf"\d\d:\d\d:\d\d composed {EDITION}: 2 articles, HTML [\d.]+ KB, in [\d.]+ s\n",
            composed,
        ), composed
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=GUARD)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert out == "stopped\n"
    assert err == ""
