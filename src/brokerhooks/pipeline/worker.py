"""The worker loop: claim jobs, run them, keep their leases alive.

One worker runs up to ``concurrency`` jobs at once in one process. It
claims only as many jobs as it has free slots, renews the leases of its
running jobs every third of the lease, and wakes up either when polled
(``poll_seconds``) or when told new work is queued (``wake``).

Stopping (SIGTERM): no new claims; running jobs get ``grace`` seconds to
finish; the rest are cancelled and their jobs released back to the queue
without counting the interrupted try.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any, Protocol

import structlog
from sqlalchemy import Engine

from brokerhooks.config import Settings
from brokerhooks.store import processing, queue
from brokerhooks.store.database import transaction
from brokerhooks.store.queue import ClaimedJob

log = structlog.get_logger("brokerhooks.worker")


class JobRunner(Protocol):
    async def run(self, job: ClaimedJob, worker: str) -> str: ...

    async def aclose(self) -> None: ...


class Dispatcher:
    """Hands each job to the runner of its kind."""

    def __init__(self, runners: dict[str, JobRunner]) -> None:
        self._runners = runners

    async def run(self, job: ClaimedJob, worker: str) -> str:
        return await self._runners[job.kind].run(job, worker)

    async def aclose(self) -> None:
        for runner in self._runners.values():
            await runner.aclose()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        processor: JobRunner,
        concurrency: int | None = None,
        name: str | None = None,
    ) -> None:
        self.name = name or worker_name()
        self._engine = engine
        self._settings = settings
        self._processor = processor
        self._concurrency = concurrency or settings.worker_concurrency
        self._running: dict[asyncio.Task[Any], ClaimedJob] = {}
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()

    def wake(self) -> None:
        """New work may be waiting: claim now instead of at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Claim and run jobs until ``stop`` is called."""
        log.info("worker_started", worker=self.name, concurrency=self._concurrency)
        heartbeat = asyncio.create_task(self._heartbeat(), name="lease-heartbeat")
        try:
            await self._loop()
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            free = self._concurrency - len(self._running)
            jobs = await self._claim(free) if free > 0 else []
            for job in jobs:
                task = asyncio.create_task(self._run(job))
                self._running[task] = job
            if jobs and len(jobs) == free:
                continue  # there may be more
            if not jobs and not self._running:
                self._idle.set()
            await self._wait()

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        def claim() -> list[ClaimedJob]:
            with transaction(self._engine, write=True) as connection:
                return queue.claim(
                    connection,
                    worker=self.name,
                    limit=limit,
                    lease_seconds=self._settings.lease_seconds,
                )

        try:
            return await asyncio.to_thread(claim)
        except Exception as error:
            log.warning("claim_failed", worker=self.name, error=str(error))
            return []

    async def _wait(self) -> None:
        waiters = [
            asyncio.create_task(self._wakeup.wait()),
            asyncio.create_task(self._stopping.wait()),
        ]
        await asyncio.wait(
            waiters,
            timeout=self._settings.poll_seconds,
            return_when=asyncio.FIRST_COMPLETED,
        )
        for waiter in waiters:
            waiter.cancel()
        self._wakeup.clear()

    async def _run(self, job: ClaimedJob) -> None:
        self._idle.clear()
        try:
            await self._processor.run(job, self.name)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or a store failure: the lease will expire and another
            # try will be made; keep the worker alive.
            log.exception("job_crashed", worker=self.name, job=job.id)
        finally:
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._wakeup.set()

    async def _heartbeat(self) -> None:
        lease = self._settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            ids = [job.id for job in self._running.values()]
            if not ids:
                continue

            def extend(ids: list[int] = ids) -> int:
                with transaction(self._engine, write=True) as connection:
                    return queue.extend_leases(
                        connection, worker=self.name, job_ids=ids, lease_seconds=lease
                    )

            try:
                await asyncio.to_thread(extend)
            except Exception as error:
                log.warning("lease_renewal_failed", worker=self.name, error=str(error))

    async def stop(self, grace: float = 20.0) -> None:
        """Finish or release running jobs, then return."""
        self._stopping.set()
        if self._running:
            await asyncio.wait(list(self._running), timeout=grace)
        unfinished = dict(self._running)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if unfinished:
            await asyncio.to_thread(self._release, list(unfinished.values()))
        await self._processor.aclose()
        log.info("worker_stopped", worker=self.name, released=len(unfinished))

    def _release(self, jobs: list[ClaimedJob]) -> None:
        with transaction(self._engine, write=True) as connection:
            queue.release(
                connection, job_ids=[job.id for job in jobs], worker=self.name
            )
            processing.release_running_attempts(
                connection,
                worker=self.name,
                event_ids=[job.event_id for job in jobs if job.event_id],
            )

    async def wait_idle(self) -> None:
        """For tests and the demo: until nothing is running or claimable."""
        await self._idle.wait()
