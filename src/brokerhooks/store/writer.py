"""Group commit: concurrent deliveries share one transaction.

One writer task owns the write path. Deliveries hand it their rows and wait;
while a commit is in flight, new rows queue up, and the next commit takes
all of them at once (up to ``batch_max``). There is no fixed collection
wait: at low load a lone delivery is committed at once, under load the batch
grows by itself. A caller's future resolves only after its rows are
committed, so "acknowledged" means "on disk".

If a batch fails, its writes are retried one by one, so that one bad write
cannot take its neighbours down with it; what still fails is reported to its
own caller.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Engine, Table

from brokerhooks.errors import StoreUnavailable
from brokerhooks.store.database import transaction

log = structlog.get_logger("brokerhooks.store.writer")


@dataclass(slots=True)
class Write:
    """Rows that must be committed together, in table order."""

    rows: list[tuple[Table, dict[str, Any]]] = field(default_factory=list)

    def add(self, table: Table, row: dict[str, Any]) -> Write:
        self.rows.append((table, row))
        return self


class GroupWriter:
    """Commits writes in batches from one background task."""

    def __init__(self, engine: Engine, *, batch_max: int = 500) -> None:
        self._engine = engine
        self._batch_max = batch_max
        self._pending: list[tuple[Write, asyncio.Future[None] | None]] = []
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="group-writer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        # Called after each successful commit (wakes an embedded worker).
        self.on_commit: Callable[[], None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-writer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def write(self, write: Write) -> None:
        """Commit ``write``; return once it is durable or raise StoreUnavailable."""
        if self._closing:
            raise StoreUnavailable("the service is shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        self._wakeup.set()
        await future

    def write_later(self, write: Write) -> None:
        """Queue ``write`` without waiting (delivery records of rejections)."""
        if not self._closing:
            self._pending.append((write, None))
            self._wakeup.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self._batch_max]
                del self._pending[: self._batch_max]
                results = await loop.run_in_executor(
                    self._executor, self._commit, [write for write, _ in batch]
                )
                if self.on_commit is not None and None in results:
                    self.on_commit()
                for (_, future), error in zip(batch, results, strict=True):
                    if future is None or future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
            if self._closing:
                return

    def _commit(self, writes: Sequence[Write]) -> list[Exception | None]:
        try:
            self._commit_together(writes)
        except Exception as error:
            if len(writes) == 1:
                return [_unavailable(error)]
            log.warning("group_commit_failed", size=len(writes), error=str(error))
            return [self._commit_alone(write) for write in writes]
        return [None] * len(writes)

    def _commit_alone(self, write: Write) -> Exception | None:
        try:
            self._commit_together([write])
        except Exception as error:
            return _unavailable(error)
        return None

    def _commit_together(self, writes: Sequence[Write]) -> None:
        by_table: dict[Table, list[dict[str, Any]]] = defaultdict(list)
        for write in writes:
            for table, row in write.rows:
                by_table[table].append(row)
        with transaction(self._engine, write=True) as connection:
            for table, rows in by_table.items():
                connection.execute(table.insert(), rows)


def _unavailable(error: Exception) -> StoreUnavailable:
    if isinstance(error, StoreUnavailable):
        return error
    log.error("write_failed", error=str(error).splitlines()[0])
    return StoreUnavailable(str(error).splitlines()[0])
