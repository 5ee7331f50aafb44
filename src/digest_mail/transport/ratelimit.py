"""The send rate: token buckets per second and per hour, on an injectable clock.

Each relay's pool holds one :class:`RateLimiter` (``[smtp] rate``, ``rate_per_hour``,
shared by weight when there are several relays). Time comes from a :class:`Clock` so
tests run a whole backoff schedule without sleeping on real time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Time as the sender sees it; tests inject one that never sleeps on real time."""

    def monotonic(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class RateLimiter:
    """Token buckets: at most ``per_second`` messages a second and ``per_hour`` an hour.

    0 means unlimited. The hourly bucket holds one minute's worth so a burst can never
    spend the whole hour at once.
    """

    def __init__(
        self, *, per_second: float = 0.0, per_hour: int = 0, clock: Clock | None = None
    ) -> None:
        self.clock = clock or SystemClock()
        self._buckets: list[list[float]] = []  # [rate per second, capacity, tokens, last]
        now = self.clock.monotonic()
        if per_second > 0:
            capacity = max(1.0, per_second)
            self._buckets.append([per_second, capacity, capacity, now])
        if per_hour > 0:
            capacity = max(1.0, per_hour / 60)
            self._buckets.append([per_hour / 3600, capacity, capacity, now])
        self._lock = asyncio.Lock()

    @property
    def limited(self) -> bool:
        return bool(self._buckets)

    async def acquire(self) -> None:
        if not self._buckets:
            return
        async with self._lock:
            while True:
                now = self.clock.monotonic()
                wait = 0.0
                for bucket in self._buckets:
                    rate, capacity, tokens, last = bucket
                    tokens = min(capacity, tokens + (now - last) * rate)
                    bucket[2], bucket[3] = tokens, now
                    if tokens < 1 - 1e-9:  # float dust must not become a zero sleep
                        wait = max(wait, (1 - tokens) / rate)
                if wait <= 0:
                    for bucket in self._buckets:
                        bucket[2] -= 1
                    return
                await self.clock.sleep(wait)
