"""The one-click unsubscribe_endpoint under hostile requests (real HTTP on 127.0.0.1).

Forged, altered, re-keyed and oversized requests change nothing; a token for one
reader never suppresses another; pages never echo markup from the request.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from digest_mail.audience.unsubscribe import make_token, signing_key
from digest_mail.config import Workspace, find_workspace
from digest_mail.ledger.db import Ledger
from digest_mail.ledger.suppressions import list_suppressions

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _suppressed(ws: Workspace) -> list[str]:
    with Ledger(ws.ledger_path) as ledger:
        return [s.address for s in list_suppressions(ledger)]


async def test_hostile_requests_change_nothing(unsubscribe_endpoint: tuple[str, Workspace]) -> None:
    url, ws = unsubscribe_endpoint
    key = signing_key(ws)
    good = make_token(key, "weekly", "hanako@example.jp")
    other_key = make_token(b"another-key-0123456789abcdef", "weekly", "taro@example.jp")
    mac = good.partition(".")[2]
    taro_body = make_token(key, "weekly", "taro@example.jp").partition(".")[0]
    attempts = [
        ("POST", {"t": other_key}, ONE_CLICK),  # signed with someone else's key
        ("POST", {"t": f"{taro_body}.{mac}"}, ONE_CLICK),  # hanako's MAC on taro's body
        ("POST", {"t": good + "A"}, ONE_CLICK),
        ("POST", {"t": good[:-1]}, ONE_CLICK),
        ("POST", {"t": "<script>alert(1)</script>"}, ONE_CLICK),
        ("POST", {"t": "a" * 100_000}, ONE_CLICK),
        ("POST", {"t": good}, {"List-Unsubscribe": "One-Click", "x": "y" * 40_000}),
        ("GET", {"t": good}, {}),  # a link scanner: shows a page, changes nothing
        ("HEAD", {"t": good}, {}),
        ("PUT", {"t": good}, ONE_CLICK),
        ("DELETE", {"t": good}, {}),
    ]
    statuses = []
    async with aiohttp.ClientSession() as session:
        for method, params, form in attempts:
            async with session.request(method, url, params=params, data=form or None) as reply:
                text = await reply.text()
                statuses.append(reply.status)
                assert "<script>alert" not in text
        assert _suppressed(ws) == []
        assert all(s in (200, 400, 405, 413, 414, 431) for s in statuses), statuses
        assert statuses[7] == 200 and statuses[0] == 400 and statuses[1] == 400
        async with session.post(url, params={"t": good}, data=ONE_CLICK) as reply:
            assert reply.status == 200
    assert _suppressed(ws) == ["hanako@example.jp"]


async def _read_until_closed(port: int, request: bytes) -> bytes:
    """Send ``request`` (deliberately unfinished) and read until the server hangs up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        # Generous: before the fix, aiohttp kept an unfinished request open for an hour.
        async with asyncio.timeout(60):
            return await reader.read()
    finally:
        writer.close()


async def test_half_sent_requests_are_cut_off(workspace: Path) -> None:
    """Slowloris: headers or a body that never finish hold no connection open."""
    from aiohttp import web

    from digest_mail.audience.serve import make_app, make_runner

    ws = find_workspace(workspace)
    runner = make_runner(make_app(ws, body_timeout=0.2), header_timeout=0.2)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        token = make_token(signing_key(ws), "weekly", "hanako@example.jp")
        never_ends = f"POST /unsubscribe?t={token} HTTP/1.1\r\nHost: a\r\nX-Slow: a".encode()
        assert await _read_until_closed(port, never_ends) == b""
        assert await _read_until_closed(port, b"") == b""  # connects and says nothing
        body_never_ends = (
            f"POST /unsubscribe?t={token} HTTP/1.1\r\nHost: a\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            "List-Unsubscribe=One-"
        ).encode()
        answer = await _read_until_closed(port, body_never_ends)
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    finally:
        await runner.cleanup()
    assert _suppressed(ws) == []
