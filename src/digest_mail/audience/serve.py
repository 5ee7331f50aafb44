"""The one-click unsubscribe endpoint (RFC 8058), served with aiohttp.

``POST /unsubscribe?t=TOKEN`` with the body ``List-Unsubscribe=One-Click`` is what mail
providers send when a reader presses their "unsubscribe" button: it suppresses the
address at once and answers 200. ``GET`` (a reader following the footer link, or a
scanner prefetching it) changes nothing and shows a small Japanese page whose button
POSTs. A forged, truncated or missing token gets 400 and changes nothing. The token of
a test mail (``test-send``) gets, for GET and POST alike, a page saying that it is a
test, and changes nothing: the editor checking the link stays subscribed.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import signal
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

from digest_mail.audience.unsubscribe import Token, TokenError, read_token, signing_key
from digest_mail.config import Workspace
from digest_mail.errors import DigestMailError
from digest_mail.ledger.db import Ledger, open_ledger, utcnow
from digest_mail.ledger.suppressions import suppress

__all__ = ["ServerInfo", "make_app", "make_runner", "serve", "start_site", "unsubscribe_path"]

ONE_CLICK = "One-Click"
# A client gets this long to send a request's headers (and, idle, to start the next one),
# and then again as long for its body: a half-sent request must not hold a connection for
# long (slowloris). aiohttp's own default keeps an unfinished request open for an hour.
HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
_LEDGER: web.AppKey[Ledger] = web.AppKey("ledger", Ledger)
_HEADERS = {
    "Cache-Control": "no-store",
    # The token is in the URL: never leak it to another site.
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
_PAGE = """<!doctype html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 32em; margin: 3em auto; padding: 0 1em;
       line-height: 1.7; color: #222; }}
button {{ font-size: 1em; padding: .6em 1.4em; border: 0; border-radius: 4px;
          background: #b22222; color: #fff; cursor: pointer; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""


def unsubscribe_path(workspace: Workspace) -> str:
    """The path of ``[unsubscribe] base_url`` (``/unsubscribe`` by default)."""
    return urlsplit(workspace.settings.unsubscribe.base_url).path or "/unsubscribe"


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=_PAGE.format(title=html.escape(title), body=body),
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers=_HEADERS,
    )


def _bad_link(error: TokenError) -> web.Response:
    return _page(
        "リンクが無効です",
        "<p>この配信停止リンクは無効か、途中で切れています。メールに記載されたリンクを"
        "そのまま開いてください。</p>"
        f"<p><small>{html.escape(str(error))}</small></p>",
        status=400,
    )


def request_line(request: web.Request, status: int) -> str:
    """One access-log line: time, client, method, path and status. The token in the query
    is masked (it unsubscribes a reader), and the rest is quoted: it came from outside."""
    query = "&".join(
        f"{quote(k, safe='')}={'***' if k == 't' else quote(v, safe='')}"
        for k, v in request.query.items()
    )
    path = quote(request.path, safe="/") + (f"?{query}" if query else "")
    return f"{utcnow()} {request.remote or '-'} {request.method} {path} {status}"


def make_app(
    workspace: Workspace,
    *,
    key: bytes | None = None,
    body_timeout: float = BODY_TIMEOUT,
    log: Callable[[str], None] | None = None,
) -> web.Application:
    """The unsubscribe application; it opens the ledger on startup and closes it on cleanup.
    With ``log``, each request is logged in one line (:func:`request_line`)."""
    key = signing_key(workspace) if key is None else key
    newsletter = workspace.settings.newsletter.name

    @web.middleware
    async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if log is not None:
                log(request_line(request, exc.status))
            raise
        if log is not None:
            log(request_line(request, response.status))
        return response

    app = web.Application(client_max_size=16 * 1024, middlewares=[access_log])

    def token_of(request: web.Request, form: dict[str, str] | None = None) -> tuple[str, Token]:
        token = request.query.get("t", "") or (form or {}).get("t", "")
        if not token:
            raise TokenError("the unsubscribe link has no token")
        return token, read_token(key, token)

    def test_mail(found: Token) -> web.Response:
        return _page(
            "テストメールのリンクです",
            f"<p>このリンクは {html.escape(newsletter)} のテスト送信（[TEST]）のものです。"
            f"{html.escape(found.address)} の配信は停止されていません。何も変更していません。"
            "</p><p>読者に届くメールでは、このリンクから配信停止の確認ページが開きます。</p>",
        )

    async def confirm(request: web.Request) -> web.Response:
        try:
            token, found = token_of(request)
        except TokenError as exc:
            return _bad_link(exc)
        if found.test:
            return test_mail(found)
        list_name, address = found.list_name, found.address
        action = html.escape(f"{request.path}?t={quote(token, safe='')}")
        return _page(
            "配信停止の確認",
            f"<p>{html.escape(address)} 宛の {html.escape(newsletter)}"
            f"（{html.escape(list_name)}）の配信を停止しますか？</p>"
            f'<form method="post" action="{action}">'
            f'<input type="hidden" name="List-Unsubscribe" value="{ONE_CLICK}">'
            '<button type="submit">配信を停止する</button></form>'
            "<p><small>このページを開いただけでは配信は停止されません。</small></p>",
        )

    async def unsubscribe(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(body_timeout):
                posted = await request.post()
        except TimeoutError:
            return _page(
                "リクエストが時間切れです",
                "<p>送信が途中で止まりました。</p>",
                status=408,
            )
        form = {k: str(v) for k, v in posted.items()}
        try:
            _token, found = token_of(request, form)
        except TokenError as exc:
            return _bad_link(exc)
        if found.test:
            return test_mail(found)
        list_name, address = found.list_name, found.address
        if form.get("List-Unsubscribe") != ONE_CLICK:
            return _page(
                "リクエストが不正です",
                "<p>List-Unsubscribe=One-Click がありません。</p>",
                status=400,
            )
        suppress(
            request.app[_LEDGER],
            address,
            reason="unsubscribed",
            source=list_name,
            detail="one-click",
        )
        return _page(
            "配信を停止しました",
            f"<p>{html.escape(address)} 宛の {html.escape(newsletter)}"
            f"（{html.escape(list_name)}）の配信を停止しました。"
            "ご購読ありがとうございました。</p>",
        )

    async def start_ledger(app: web.Application) -> None:
        app[_LEDGER] = open_ledger(workspace)

    async def close_ledger(app: web.Application) -> None:
        app[_LEDGER].close()

    path = unsubscribe_path(workspace)
    app.router.add_get(path, confirm)
    app.router.add_post(path, unsubscribe)
    app.on_startup.append(start_ledger)
    app.on_cleanup.append(close_ledger)
    return app


@dataclass(frozen=True)
class ServerInfo:
    """Where the server listens (the port is the real one when 0 was asked for)."""

    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"


def make_runner(app: web.Application, *, header_timeout: float = HEADER_TIMEOUT) -> web.AppRunner:
    """The runner ``serve`` uses: aiohttp closes a connection whose request headers are not
    complete within ``keepalive_timeout`` of it opening (or of the last response), and
    reads the rest of an unread body for no longer than that either."""
    return web.AppRunner(
        app, access_log=None, keepalive_timeout=header_timeout, lingering_time=header_timeout
    )


async def start_site(runner: web.AppRunner, host: str, port: int, *, hint: str) -> int:
    """Listen on ``host``:``port`` (0: any free port) and return the bound port; a port
    that cannot be had is a :class:`DigestMailError` carrying ``hint``."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        raise DigestMailError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint=hint
        ) from None
    return int(runner.addresses[0][1]) if runner.addresses else port


async def _serve(
    workspace: Workspace,
    host: str,
    port: int,
    on_ready: Callable[[ServerInfo], None],
    log: Callable[[str], None] | None,
) -> None:
    runner = make_runner(make_app(workspace, log=log))
    await runner.setup()
    try:
        bound = await start_site(
            runner, host, port, hint="choose another --port, or stop what is using it"
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGTERM (systemd, a test) stops cleanly: the ledger is closed on the way out.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        on_ready(ServerInfo(host, bound, unsubscribe_path(workspace)))
        await stop.wait()
    finally:
        await runner.cleanup()


def serve(
    workspace: Workspace,
    *,
    host: str,
    port: int,
    on_ready: Callable[[ServerInfo], None],
    log: Callable[[str], None] | None = None,
) -> None:
    """Run the endpoint until interrupted; ``on_ready`` is told the address once bound,
    ``log`` gets one line per request."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(workspace, host, port, on_ready, log))
