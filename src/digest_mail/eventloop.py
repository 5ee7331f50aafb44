"""Running the send loop: on uvloop where it is installed, else asyncio's own loop; and
the loop's one wake-up primitive (:class:`Wake`).

uvloop's event loop and transports are written in C; on the send path, where each
message is a few callbacks and two socket operations, it takes a visible share of the
per-message cost off the one core the sender has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when importable (not on Windows), else None."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Like :func:`asyncio.run`, on uvloop when available."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coroutine)


class Wake:
    """Like :class:`asyncio.Event` for the feeder, whose wait has a timeout: one future
    and one timer a wait, where ``asyncio.wait_for(event.wait(), …)`` made a Task."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self, timeout: float) -> None:
        """Until :meth:`set` is called or ``timeout`` seconds have passed."""
        if self._set:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(timeout, _wake_up, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _wake_up(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
