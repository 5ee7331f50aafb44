"""``digest-mail preview --serve``: the live preview's web server and file watcher.

Three tasks share one event loop: the aiohttp server (the page, its two assets, the
state as JSON, each frame's HTML and a server-sent event stream), the watcher of
articles/, templates/email/ and digest-mail.toml (watchfiles), and the composer, which
recomposes once per batch of changes in a worker thread (:class:`LiveSession`) and
tells every open page through the event stream. SpamAssassin (about 1.2 s) scores each
new render in the background; a newer render makes an older score moot.

Safe by default: it listens on a loopback address only, answers only its own fixed
routes (no URL maps to a file, so nothing else in the workspace or outside it can be
read) and only requests addressed to the loopback host it listens on (a foreign Host
header, as DNS rebinding would send, is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import watchfiles
from aiohttp import web

from digest_mail.audience.serve import BODY_TIMEOUT, HEADER_TIMEOUT, start_site
from digest_mail.config import CONFIG_NAME, Workspace
from digest_mail.errors import DigestMailError
from digest_mail.render.draft import Draft
from digest_mail.review.check import check_draft
from digest_mail.review.liveview import Composed, LiveSession, error_lines

__all__ = [
    "DEFAULT_PORT",
    "LiveInfo",
    "check_loopback",
    "make_live_app",
    "run_live",
    "serve_live",
]

DEFAULT_PORT = 8026
# A page's event stream sends a comment this often, so a closed tab is noticed.
HEARTBEAT = 15.0
_ASSETS = {"page.js": "text/javascript", "page.css": "text/css"}
_COMMON_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "frame-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
# The email as a mail client shows it: its own inline styles and remote https images,
# never a script; only this page may frame it.
_FRAME_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; font-src https: data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


class Hub:
    """The state's version, and every open page waiting for the next one."""

    def __init__(self) -> None:
        self.version = 0
        self.closing = False
        self._changed = asyncio.Condition()

    async def publish(self, version: int) -> None:
        async with self._changed:
            self.version = max(self.version, version)
            self._changed.notify_all()

    async def close(self) -> None:
        async with self._changed:
            self.closing = True
            self._changed.notify_all()

    async def after(self, seen: int, *, timeout: float) -> int | None:
        """The version once it differs from ``seen`` (None on timeout or when closing)."""
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.closing or self.version != seen), timeout
                )
            except TimeoutError:
                return None
            return None if self.closing else self.version


_SESSION: web.AppKey[LiveSession] = web.AppKey("session", LiveSession)
_HUB: web.AppKey[Hub] = web.AppKey("hub", Hub)
_HOSTS: web.AppKey[set[str]] = web.AppKey("hosts", set)


def check_loopback(host: str) -> None:
    """Refuse to listen anywhere but this machine: the page shows readers' names."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise DigestMailError(
            f"the live preview listens on loopback addresses only, not {host!r}",
            hint="use 127.0.0.1 (the default) and open the page on this machine",
        )


def _asset(name: str) -> str:
    return (resources.files("digest_mail") / "data" / "liveview" / name).read_text("utf-8")


def _choice(request: web.Request) -> tuple[str | None, int]:
    """The reader picked on the page: ``?list=NAME&row=N``."""
    list_name = request.query.get("list") or None
    try:
        row = int(request.query.get("row", "0"))
    except ValueError:
        row = 0
    return list_name, row


def _html(text: str, policy: str) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/html",
        charset="utf-8",
        headers={**_COMMON_HEADERS, "Content-Security-Policy": policy},
    )


@web.middleware
async def _only_our_host(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    allowed = request.app[_HOSTS]
    if allowed and request.host.lower() not in allowed:
        return web.Response(status=403, text="not this host\n", headers=_COMMON_HEADERS)
    response: web.StreamResponse = await handler(request)
    return response


def make_live_app(session: LiveSession, hub: Hub) -> web.Application:
    """The live preview's routes; nothing else is served (no file is looked up by URL)."""
    app = web.Application(client_max_size=4096, middlewares=[_only_our_host])
    app[_SESSION] = session
    app[_HUB] = hub
    app[_HOSTS] = set()
    page = _asset("page.html")
    assets = {name: _asset(name) for name in _ASSETS}

    async def index(request: web.Request) -> web.Response:
        return _html(page, _PAGE_POLICY)

    def asset(name: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(
                text=assets[name], content_type=_ASSETS[name], headers=_COMMON_HEADERS
            )

        return handler

    async def state(request: web.Request) -> web.Response:
        list_name, row = _choice(request)
        data = await asyncio.to_thread(session.state, list_name, row)
        return web.Response(
            text=json.dumps(data, ensure_ascii=False),
            content_type="application/json",
            headers=_COMMON_HEADERS,
        )

    def frame(dark: bool) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            list_name, row = _choice(request)
            body = await asyncio.to_thread(session.frame, list_name, row, dark=dark)
            if body is None:
                body = "<!doctype html><p>Nothing composed yet: see the error above.</p>"
            return _html(body, _FRAME_POLICY)

        return handler

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={**_COMMON_HEADERS, "Content-Type": "text/event-stream"}
        )
        await response.prepare(request)
        seen = -1
        with contextlib.suppress(ConnectionError):
            await response.write(b"retry: 1000\n\n")
            while not hub.closing:
                version = await hub.after(seen, timeout=HEARTBEAT)
                if hub.closing:
                    break
                if version is None:
                    await response.write(b": still here\n\n")
                    continue
                seen = version
                await response.write(f"event: update\ndata: {version}\n\n".encode())
        return response

    app.router.add_get("/", index)
    for name in _ASSETS:
        app.router.add_get(f"/assets/{name}", asset(name))
    app.router.add_get("/state.json", state)
    app.router.add_get("/frame/light.html", frame(False))
    app.router.add_get("/frame/dark.html", frame(True))
    app.router.add_get("/events", events)
    return app


@dataclass(frozen=True)
class LiveInfo:
    """Where the page is, and what is watched."""

    url: str
    host: str
    port: int
    edition: str | None
    watched: tuple[str, ...]


class _Watcher:
    """articles/ and templates/email/ (recursively) and digest-mail.toml.

    The workspace's top folder is watched without recursion (for digest-mail.toml, and
    articles/ or templates/ appearing or going), the two folders with it; drafts/, var/
    or a virtual environment beside them are never walked. An editor's swap and backup
    files are ignored (watchfiles' default filter).
    """

    def __init__(self, workspace: Workspace, notify: Callable[[set[str]], None]) -> None:
        self.root = workspace.root
        self.articles = workspace.articles_dir
        self.templates = workspace.templates_dir
        self.notify = notify
        self._ignore = watchfiles.DefaultFilter()

    def _top(self, change: watchfiles.Change, path: str) -> bool:
        return Path(path).name in (CONFIG_NAME, "articles", "templates") and self._ignore(
            change, path
        )

    def _deep(self, change: watchfiles.Change, path: str) -> bool:
        found = Path(path)
        inside = found.is_relative_to(self.articles) or found.is_relative_to(self.templates)
        return inside and self._ignore(change, path)

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set (watchfiles notices within a few milliseconds)."""
        first = True
        while not stop.is_set():
            folders = [p for p in (self.articles, self.root / "templates") if p.is_dir()]
            restart = asyncio.Event()
            tasks = [asyncio.create_task(self._top_changes(restart))]
            if folders:
                tasks.append(asyncio.create_task(self._deep_changes(folders, restart)))
            waiting = asyncio.create_task(stop.wait())
            # One step of each task sets its watches up (watchfiles does so before its
            # first wait); a save in a folder that appeared before that is seen by the
            # compose asked for here, any later one by the new watch.
            await asyncio.sleep(0)
            if not first:
                self.notify(set())
            first = False
            try:
                await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
            finally:
                restart.set()
                waiting.cancel()
                for task in tasks:
                    # A folder removed under a watch ends it with an error: watch again.
                    with contextlib.suppress(Exception):
                        await task

    async def _top_changes(self, restart: asyncio.Event) -> None:
        folders = {self.articles.name, "templates"}
        async for changes in watchfiles.awatch(
            self.root, watch_filter=self._top, recursive=False, stop_event=restart, step=30
        ):
            self.notify({path for _, path in changes})
            if any(Path(path).name in folders for _, path in changes):
                return  # a watched folder came or went: watch again from the top

    async def _deep_changes(self, folders: list[Path], restart: asyncio.Event) -> None:
        async for changes in watchfiles.awatch(
            *folders, watch_filter=self._deep, stop_event=restart, step=30
        ):
            self.notify({path for _, path in changes})


class _Spam:
    """Scores the newest render with SpamAssassin off the event loop, one at a time."""

    def __init__(self, session: LiveSession, hub: Hub, executable: str) -> None:
        self.session, self.hub, self.executable = session, hub, executable
        self.latest: Draft | None = None
        self.wake = asyncio.Event()

    def request(self, composed: Composed) -> None:
        self.latest = composed.draft
        self.session.set_check(composed.draft, None, state="pending")
        self.wake.set()

    async def run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            draft, good = self.latest, self.session.good
            if draft is None or good is None or good.draft is not draft:
                continue
            error = ""
            try:
                report = await asyncio.to_thread(
                    check_draft,
                    draft,
                    settings=good.workspace.settings,
                    spamassassin=self.executable,
                )
                state = "done"
            except DigestMailError as exc:
                report, state, error = None, "failed", " ".join(error_lines(exc))
            if self.session.set_check(draft, report, state=state, error=error):
                await self.hub.publish(self.session.version)


async def run_live(
    session: LiveSession,
    *,
    host: str,
    port: int,
    spamassassin: str | None,
    on_ready: Callable[[LiveInfo], None],
    on_event: Callable[[Composed | tuple[str, ...], set[str]], None],
    stop: asyncio.Event,
) -> None:
    """Serve, watch and recompose until ``stop`` is set; then close everything."""
    check_loopback(host)
    hub = Hub()
    app = make_live_app(session, hub)
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=HEADER_TIMEOUT,
        lingering_time=BODY_TIMEOUT,
        shutdown_timeout=2.0,
    )
    await runner.setup()
    changed = asyncio.Event()
    paths_changed: set[str] = set()
    tasks: list[asyncio.Task[None]] = []
    try:
        bound = await start_site(
            runner, host, port, hint="choose another --port (--port 0 picks a free one)"
        )
        shown = f"[{host}]" if ":" in host else host
        app[_HOSTS].update({f"{shown}:{bound}", f"localhost:{bound}"})

        def notify(paths: set[str]) -> None:
            paths_changed.update(paths)
            changed.set()

        spam = _Spam(session, hub, spamassassin) if spamassassin else None

        async def compose_on_change() -> None:
            while True:
                await changed.wait()
                changed.clear()
                paths = set(paths_changed)
                paths_changed.clear()
                outcome = await asyncio.to_thread(session.compose_now)
                if spam is not None and isinstance(outcome, Composed):
                    spam.request(outcome)
                await hub.publish(session.version)
                on_event(outcome, paths)

        workspace = session.workspace
        tasks.append(asyncio.create_task(_Watcher(workspace, notify).run(stop)))
        tasks.append(asyncio.create_task(compose_on_change()))
        if spam is not None:
            tasks.append(asyncio.create_task(spam.run()))
        on_ready(
            LiveInfo(
                url=f"http://{shown}:{bound}/",
                host=host,
                port=bound,
                edition=session.edition_id,
                watched=("articles/", "templates/email/", CONFIG_NAME),
            )
        )
        changed.set()  # compose once at the start: the files may have changed since
        await stop.wait()
    finally:
        stop.set()
        watcher, others = tasks[:1], tasks[1:]
        for task in others:
            task.cancel()
        for task in [*watcher, *others]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await hub.close()
        await runner.cleanup()


async def _until_interrupted(session: LiveSession, **options: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C and SIGTERM end the serving loop; everything closes on the way out.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await run_live(session, stop=stop, **options)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def serve_live(
    workspace: Workspace,
    draft: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    spamassassin: str | None = None,
    on_ready: Callable[[LiveInfo], None],
    on_event: Callable[[Composed | tuple[str, ...], set[str]], None],
) -> None:
    """Serve the live preview of ``draft`` (default: the latest, else a new one as
    ``compose`` would make it) until interrupted (Ctrl-C, SIGTERM)."""
    check_loopback(host)
    session = LiveSession(workspace, draft)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _until_interrupted(
                session,
                host=host,
                port=port,
                spamassassin=spamassassin,
                on_ready=on_ready,
                on_event=on_event,
            )
        )
