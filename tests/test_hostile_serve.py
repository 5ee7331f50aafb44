"""The one-click unsubscribe_endpoint under hostile requests (real HTTP on 127.0.0.1).

Forged, altered, re-keyed and oversized requests change nothing; a token for one
reader never suppresses another; pages never echo markup from the request.
"""

from __future__ import annotations

import aiohttp

from digest_mail.config import Workspace
from digest_mail.ledger import Ledger
from digest_mail.unsubscribe import make_token, signing_key

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def _suppressed(ws: Workspace) -> list[str]:
    with Ledger(ws.ledger_path) as ledger:
        return [s.address for s in ledger.suppressions()]


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
