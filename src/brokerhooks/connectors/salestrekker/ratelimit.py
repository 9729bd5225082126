"""A request rate limit per broker, kept in the process.

SalesTrekker documents no rate limit. brokerhooks paces itself anyway so
that a backlog drained by several workers does not hammer one tenant: every
client of a broker in this process draws from that broker's bucket.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """Lets ``rate`` calls a second through, in bursts of up to ``burst``.

    ``acquire`` reserves the next free slot without holding a lock across
    an ``await``, so the bucket works from any event loop or thread. Calls
    are let through in the order they reserved.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be more than 0, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()

    def reserve(self) -> float:
        """Take one token; return how many seconds to wait before using it."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._updated = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self) -> None:
        """Wait until the caller may send one request."""
        wait = self.reserve()
        if wait > 0:
            await self._sleep(wait)


class RateLimits:
    """One bucket per broker id, created on first use."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, broker_id: str, rate: float) -> TokenBucket:
        """The broker's bucket; a new one if ``rate`` changed."""
        with self._lock:
            bucket = self._buckets.get(broker_id)
            if bucket is None or bucket.rate != rate:
                bucket = TokenBucket(rate, clock=self._clock, sleep=self._sleep)
                self._buckets[broker_id] = bucket
            return bucket


RATE_LIMITS = RateLimits()
"""The buckets every client in this process shares by default."""
