"""Recognising brokers by their API key, and slowing down key guessers.

The directory keeps every active broker's keyed hash in memory and reloads
it from the store at most every ``broker_cache_seconds`` (and, on an unknown
key, at most once a second), so that the hot path rarely touches the store
and a rotated or removed key stops working within seconds in every process.

Failed keys are counted per address, in memory and in the store (in
batches), so that several processes block a guesser together; an accepted
key touches the store only if its address had failed before.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from brokerhooks.errors import StoreUnavailable
from brokerhooks.security.secrets import Secret, Vault, constant_time_equal
from brokerhooks.store import failures
from brokerhooks.store.brokers import BrokerKey, active_broker_keys
from brokerhooks.store.database import first_line, transaction
from brokerhooks.store.types import utcnow

log = structlog.get_logger("brokerhooks.ingest")

SCHEME = "salestrekker"
_MISS_RELOAD_SECONDS = 1.0


def parse_authorization(header: str | None) -> Secret | None:
    """The key from ``Salestrekker <key>``; None if missing or malformed.

    The scheme is matched case-insensitively; surrounding spaces are ignored.
    """
    if header is None:
        return None
    # Exactly two words: a key with a space inside it is malformed too.
    parts = header.split()
    if len(parts) != 2 or parts[0].lower() != SCHEME:
        return None
    return Secret(parts[1])


class BrokerDirectory:
    """Finds the broker an API key belongs to."""

    def __init__(self, engine: Engine, vault: Vault, *, ttl: float) -> None:
        self._engine = engine
        self._vault = vault
        self._ttl = ttl
        self._miss_reload = min(ttl, _MISS_RELOAD_SECONDS)
        self._by_hash: dict[str, BrokerKey] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def find(self, key: Secret) -> BrokerKey | None:
        """The broker whose key this is, or None. May raise StoreUnavailable."""
        hashes = self._vault.lookup_hashes(key)
        if time.monotonic() - self._loaded_at > self._ttl:
            await self._reload()
        found = self._match(hashes)
        if found is None and time.monotonic() - self._loaded_at > self._miss_reload:
            await self._reload()
            found = self._match(hashes)
        return found

    def _match(self, hashes: list[str]) -> BrokerKey | None:
        for candidate_hash in hashes:
            broker = self._by_hash.get(candidate_hash)
            if broker is not None and constant_time_equal(
                broker.api_key_hash, candidate_hash
            ):
                return broker
        return None

    async def _reload(self) -> None:
        async with self._lock:
            if time.monotonic() - self._loaded_at <= self._miss_reload:
                return  # another delivery reloaded while we waited
            keys = await asyncio.to_thread(self._load)
            self._by_hash = {key.api_key_hash: key for key in keys}
            self._loaded_at = time.monotonic()

    def _load(self) -> list[BrokerKey]:
        with transaction(self._engine) as connection:
            return active_broker_keys(connection)


@dataclass(slots=True)
class _Failures:
    count: int
    window_started: float
    blocked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class _Limits:
    limit: int
    window: float
    cooldown: float


class SharedFailures:
    """The store's count of failed authentications, shared by every process.

    Failures are written in batches, at most every ``flush_seconds``, so a
    flood of bad keys costs the store one transaction a second, not one per
    request. A flush says which subjects are blocked, by this process's
    failures or by others': a process learns of another's block at the next
    flush that carries a failure of the same subject. If the store cannot be
    reached, the batch is dropped with a warning and each process counts
    alone.
    """

    def __init__(
        self, engine: Engine, *, flush_seconds: float = 1.0, capacity: int = 10_000
    ) -> None:
        self._engine = engine
        self._flush_seconds = flush_seconds
        self._capacity = capacity
        self._pending: dict[tuple[str, str], tuple[int, _Limits]] = {}
        self._blocked: dict[tuple[str, str], float] = {}  # monotonic deadlines
        self._flushing: asyncio.Task[None] | None = None

    def note(
        self, scope: str, subject: str, *, limit: int, window: float, cooldown: float
    ) -> None:
        """Count a failure at the next flush."""
        key = (scope, subject)
        count = self._pending[key][0] if key in self._pending else 0
        self._pending[key] = (count + 1, _Limits(limit, window, cooldown))
        if self._flushing is None or self._flushing.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # flushed with a later failure, or by flush()
            self._flushing = loop.create_task(self._flush_later())

    def blocked_for(self, scope: str, subject: str) -> float:
        """Seconds the store says the subject is still blocked for, or 0."""
        deadline = self._blocked.get((scope, subject))
        if deadline is None:
            return 0.0
        left = deadline - time.monotonic()
        if left <= 0:
            del self._blocked[(scope, subject)]
            return 0.0
        return left

    async def flush(self) -> None:
        """Write the failures counted since the last flush."""
        pending, self._pending = self._pending, {}
        if not pending:
            return

        # How long each scope's subjects must be kept: a window and a cool-down.
        horizons = {
            scope: limits.window + limits.cooldown
            for (scope, _), (_, limits) in pending.items()
        }

        def write() -> dict[tuple[str, str], datetime | None]:
            now = utcnow()
            with transaction(self._engine, write=True) as connection:
                blocked = {
                    (scope, subject): failures.record_failure(
                        connection,
                        scope,
                        subject,
                        limit=limits.limit,
                        window=timedelta(seconds=limits.window),
                        cooldown=timedelta(seconds=limits.cooldown),
                        now=now,
                        failed=count,
                    )
                    for (scope, subject), (count, limits) in pending.items()
                }
                for scope, horizon in horizons.items():
                    failures.prune_failures(
                        connection, scope, before=now - timedelta(seconds=horizon)
                    )
                return blocked

        try:
            results = await asyncio.to_thread(write)
        except (StoreUnavailable, SQLAlchemyError) as error:
            log.warning("auth_failures_not_shared", error=first_line(error))
            return
        now, clock = utcnow(), time.monotonic()
        for key, blocked_until in results.items():
            if blocked_until is not None and blocked_until > now:
                self._blocked[key] = clock + (blocked_until - now).total_seconds()
        while len(self._blocked) > self._capacity:
            del self._blocked[next(iter(self._blocked))]

    async def clear(self, scope: str, subject: str) -> None:
        """Forget the subject's failures, pending and stored."""
        self._pending.pop((scope, subject), None)
        self._blocked.pop((scope, subject), None)

        def clear() -> None:
            with transaction(self._engine, write=True) as connection:
                failures.clear_failures(connection, scope, subject)

        try:
            await asyncio.to_thread(clear)
        except (StoreUnavailable, SQLAlchemyError) as error:
            log.warning("auth_failures_not_shared", error=first_line(error))

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._flush_seconds)
        try:
            await self.flush()
        except Exception as error:  # a background task: log, never raise
            log.warning("auth_failures_not_shared", error=first_line(error))


class FailureThrottle:
    """Blocks an address after repeated authentication failures.

    ``limit`` failures within ``window`` seconds block the address for
    ``cooldown`` seconds. The block is checked in memory, for at most
    ``capacity`` addresses (the oldest are forgotten first). With ``shared``,
    failures are also counted in the store under ``scope``, so that processes
    count together, and a block the store reports is kept too.
    """

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        cooldown: float,
        capacity: int = 10_000,
        shared: SharedFailures | None = None,
        scope: str = "ingest",
    ) -> None:
        self._limit = limit
        self._window = window
        self._cooldown = cooldown
        self._capacity = capacity
        self._by_address: OrderedDict[str, _Failures] = OrderedDict()
        self._shared = shared
        self._scope = scope

    def retry_after(self, address: str) -> float:
        """Seconds the address must still wait, or 0 if it may try."""
        entry = self._by_address.get(address)
        here = max(0.0, entry.blocked_until - time.monotonic()) if entry else 0.0
        if self._shared is None:
            return here
        return max(here, self._shared.blocked_for(self._scope, address))

    def failed(self, address: str) -> None:
        """Count a failure here, and in the store's next batch when shared."""
        if self._shared is not None:
            self._shared.note(
                self._scope,
                address,
                limit=self._limit,
                window=self._window,
                cooldown=self._cooldown,
            )
        now = time.monotonic()
        entry = self._by_address.get(address)
        if entry is None or now - entry.window_started > self._window:
            entry = _Failures(count=0, window_started=now)
        entry.count += 1
        if entry.count >= self._limit:
            entry.blocked_until = now + self._cooldown
            entry.count = 0
            entry.window_started = now
        self._by_address[address] = entry
        self._by_address.move_to_end(address)
        while len(self._by_address) > self._capacity:
            self._by_address.popitem(last=False)

    def has_failed(self, address: str) -> bool:
        """Whether failures of the address are counted here."""
        return address in self._by_address

    def succeeded(self, address: str) -> bool:
        """Forget the address's failures here; whether there were any."""
        return self._by_address.pop(address, None) is not None

    async def record_success(self, address: str, *, everywhere: bool = False) -> None:
        """``succeeded``, and the store's count cleared.

        The store is written only if the address had failed here, unless
        ``everywhere`` (for rare successes, such as a sign-in).
        """
        failed_here = self.succeeded(address)
        if self._shared is not None and (failed_here or everywhere):
            await self._shared.clear(self._scope, address)
