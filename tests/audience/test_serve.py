"""The one-click endpoint, started for real on 127.0.0.1 and asked over HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote
from urllib.request import Request, urlopen

import aiohttp
import pytest

from digest_mail.audience.unsubscribe import make_token, signing_key
from digest_mail.config import Workspace, find_workspace
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.suppressions import list_suppressions

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def suppressions(ws: Workspace) -> list[tuple[str, str, str, str]]:
    with Ledger(ws.ledger_path) as ledger:
        return [(s.address, s.reason, s.source, s.detail) for s in list_suppressions(ledger)]


async def test_one_click_post_suppresses_and_repeating_is_harmless(unsubscribe_endpoint) -> None:
    url, ws = unsubscribe_endpoint
    token = make_token(signing_key(ws), "weekly", "Suzuki.Hanako@example.com")
    async with aiohttp.ClientSession() as http:
        async with http.post(url, params={"t": token}, data=ONE_CLICK) as response:
            assert response.status == 200
            assert response.headers["Cache-Control"] == "no-store"
            assert "配信を停止しました" in await response.text()
        assert suppressions(ws) == [
            ("suzuki.hanako@example.com", "unsubscribed", "weekly", "one-click")
        ]
        async with http.post(url, params={"t": token}, data=ONE_CLICK) as response:
            assert response.status == 200
    assert len(suppressions(ws)) == 1


async def test_get_shows_a_japanese_page_that_posts_and_changes_nothing(
    unsubscribe_endpoint,
) -> None:
    url, ws = unsubscribe_endpoint
    token = make_token(signing_key(ws), "weekly", "<b>taro</b>@example.jp")
    async with aiohttp.ClientSession() as http, http.get(url, params={"t": token}) as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert "配信を停止しますか" in page
    assert "&lt;b&gt;taro&lt;/b&gt;@example.jp" in page and "<b>taro" not in page
    action = re.search(r'<form method="post" action="([^"]+)">', page)
    assert action is not None and action.group(1) == f"/unsubscribe?t={quote(token, safe='')}"
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page
    assert suppressions(ws) == []
    # The page's own button: a form POST to the action it names.
    async with aiohttp.ClientSession() as http:
        base = url.removesuffix("/unsubscribe")
        async with http.post(
            base + action.group(1).replace("&amp;", "&"), data=ONE_CLICK
        ) as response:
            assert response.status == 200
    assert suppressions(ws)[0][0] == "<b>taro</b>@example.jp"


@pytest.mark.parametrize(
    "query",
    [
        {"t": "d2Vla2x5AHRhcm9AZXhhbXBsZS5qcA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
        {"t": "d2Vla2x5AHRhcm9AZXhhbXBsZS5qcA"},
        {},
    ],
    ids=["forged", "truncated", "missing"],
)
async def test_bad_tokens_get_400_and_change_nothing(
    unsubscribe_endpoint, query: dict[str, str]
) -> None:
    url, ws = unsubscribe_endpoint
    async with aiohttp.ClientSession() as http:
        async with http.post(url, params=query, data=ONE_CLICK) as response:
            assert response.status == 400
            assert "リンクが無効です" in await response.text()
        async with http.get(url, params=query) as response:
            assert response.status == 400
    assert suppressions(ws) == []


async def test_post_without_one_click_body_is_refused(unsubscribe_endpoint) -> None:
    url, ws = unsubscribe_endpoint
    token = make_token(signing_key(ws), "weekly", "taro@example.jp")
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, params={"t": token}, data={"other": "x"}) as response,
    ):
        assert response.status == 400
    assert suppressions(ws) == []


def test_serve_command_as_a_real_process(workspace: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_MAIL_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "digest_mail", "serve", "--port", "0"],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.fullmatch(
            r"Serving one-click unsubscribe on (http://127\.0\.0\.1:\d+/unsubscribe) "
            r"\(Ctrl-C to stop\)\n",
            line,
        )
        assert found, (line, process.stderr.read() if process.stderr else "")
        ws = find_workspace(workspace)
        token = make_token(signing_key(ws), "weekly", "ito.kenta@example.jp")
        request = Request(
            f"{found.group(1)}?t={token}",
            data=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        with urlopen(request, timeout=10) as response:
            assert response.status == 200
        with pytest.raises(HTTPError) as refused:
            urlopen(
                Request(f"{found.group(1)}?t={token[:-5]}", data=b"List-Unsubscribe=One-Click"),
                timeout=10,
            )
        assert refused.value.code == 400
        refused.value.close()
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout:
            process.stdout.close()
        if process.stderr:
            process.stderr.close()
    assert suppressions(ws) == [("ito.kenta@example.jp", "unsubscribed", "weekly", "one-click")]


async def test_link_from_a_sent_message_unsubscribes_its_reader(unsubscribe_endpoint, run) -> None:
    """The whole loop: send to the list, press the one-click link of one message, the next
    send snapshot leaves that reader out."""
    import email
    import email.policy

    from digest_mail.audience.lists import iter_recipients
    from digest_mail.audience.rows import Recipient

    url, ws = unsubscribe_endpoint
    articles = sorted(str(p) for p in ws.articles_dir.glob("*.md"))
    # The commands run their own event loops: give them a thread of their own.
    composed = await asyncio.to_thread(run, "compose", *articles)
    assert composed.exit_code == 0, composed.output
    sent = await asyncio.to_thread(run, "send", "--list", "weekly", "--yes")
    assert sent.exit_code == 0, sent.output
    captured = sorted((ws.outbox_dir / "new").iterdir())
    message = email.message_from_bytes(captured[0].read_bytes(), policy=email.policy.default)
    to = message["To"].addresses[0].addr_spec
    link = re.search(r"<(https://[^>]+)>", str(message["List-Unsubscribe"]))
    assert link is not None and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    token = link.group(1).split("?t=", 1)[1]
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, params={"t": token}, data=ONE_CLICK) as response,
    ):
        assert response.status == 200
    assert [s[:3] for s in suppressions(ws)] == [(to.casefold(), "unsubscribed", "weekly")]
    with Ledger(ws.ledger_path) as ledger:
        left = [r.email for r in iter_recipients(ws, "weekly", ledger) if isinstance(r, Recipient)]
    assert to not in left and len(left) == 30


def test_serve_on_a_port_in_use_or_out_of_range_is_one_error_line(workspace: Path, run) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "--port", str(port))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert result.output.splitlines()[-1] == (
        "Hint: choose another --port, or stop what is using it"
    )
    result = run("serve", "--port", "99999")
    assert result.exit_code == 2
    assert "99999 is not in the range 0<=x<=65535" in result.output


async def test_each_request_is_logged_in_one_line_with_its_token_masked(workspace: Path) -> None:
    # The editor's trap: serve logged nothing, so an unsubscribe left no trace to look at.
    from aiohttp import web

    from digest_mail.audience.serve import make_app, make_runner

    ws = find_workspace(workspace)
    lines: list[str] = []
    runner = make_runner(make_app(ws, log=lines.append))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    token = make_token(signing_key(ws), "weekly", "ito.kenta@example.jp")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/unsubscribe", params={"t": token}) as response:
                assert response.status == 200
            async with http.post(
                f"{base}/unsubscribe", params={"t": token}, data=ONE_CLICK
            ) as response:
                assert response.status == 200
            async with http.get(f"{base}/unsubscribe", params={"t": token[:-3]}) as response:
                assert response.status == 400
            async with http.get(f"{base}/admin\x1b[31m") as response:
                assert response.status == 404
    finally:
        await runner.cleanup()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00 127\.0\.0\.1"
    assert [re.sub(stamp, "T", line) for line in lines] == [
        "T GET /unsubscribe?t=*** 200",
        "T POST /unsubscribe?t=*** 200",
        "T GET /unsubscribe?t=*** 400",
        "T GET /admin%1B%5B31m 404",
    ]
    assert not any(token[:20] in line for line in lines)
