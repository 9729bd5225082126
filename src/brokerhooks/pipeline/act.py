"""Performing actions: one ledger entry at a time, never twice.

An action job names its ledger entry (``job.ref``). The entry is marked
running (with a new attempt) in its own transaction before the action
touches the outside world, so that a worker dying mid-action leaves a
trace: the next try sees ``unfinished`` and the action looks for what the
earlier try made before making anything. Success is recorded together with
finishing the job, and only while this worker holds the job's lease; so
is what a try remembers on the way (the draft a mail is sent from).

Failures: ``ReconnectRequired`` parks the entry as ``waiting`` until the
connection is signed in again (then it is queued by itself); other
permanent errors fail it; the rest retry with backoff up to
``max_attempts``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine, select

from brokerhooks.actions.base import ActionContext, PriorAction, Services
from brokerhooks.actions.registry import get_kind
from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.connectors.msgraph.errors import ReconnectRequired
from brokerhooks.metrics import Metrics
from brokerhooks.pipeline.process import Backoff
from brokerhooks.store import queue, runs
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Event
from brokerhooks.store.processing import LeaseLost
from brokerhooks.store.queue import ClaimedJob
from brokerhooks.store.runs import LedgerEntry
from brokerhooks.store.types import utcnow

log = structlog.get_logger("brokerhooks.actions")

T = TypeVar("T")

# Gives the services of a broker, by broker id.
ServicesFactory = Callable[[str], Services]


class ActionRunner:
    """Runs ``run_action`` jobs."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        services: ServicesFactory,
        metrics: Metrics | None = None,
        closing: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._closing = closing
        self._engine = engine
        self._settings = settings
        self._services = services
        self._metrics = metrics
        self._backoff = Backoff(settings.retry_base_seconds, settings.retry_max_seconds)

    async def aclose(self) -> None:
        if self._closing is not None:
            await self._closing()

    async def _store(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with transaction(self._engine, write=True) as connection:
                return work(connection)

        return await asyncio.to_thread(run)

    async def run(self, job: ClaimedJob, worker: str) -> str:
        assert job.ref is not None
        key = job.ref
        started = time.perf_counter()
        try:
            outcome, entry, error = await self._run(job, worker, key)
        except LeaseLost:
            outcome, entry, error = "lease_lost", None, "another worker took over"
        if self._metrics is not None:
            self._metrics.jobs.labels(job.kind, outcome).inc()
        logger = log.info if outcome in (runs.DONE, "skipped") else log.warning
        logger(
            "action",
            action=key,
            kind=entry.kind if entry else None,
            attempt=len(entry.attempts) + 1 if entry else None,
            outcome=outcome,
            error=error,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return outcome

    async def _run(
        self, job: ClaimedJob, worker: str, key: str
    ) -> tuple[str, LedgerEntry | None, str | None]:
        before = await self._store(lambda c: self._start(c, job, worker, key))
        if before is None:
            return "skipped", None, None
        entry, prior, event = before
        context = ActionContext(
            key=key,
            broker_id=entry.broker_id,
            event_id=entry.event_id,
            deal_id=entry.deal_id,
            rule_id=entry.rule_id,
            step_id=entry.step_id,
            kind=entry.kind,
            connection=entry.connection,
            params=entry.params,
            event=event,
            services=self._services(entry.broker_id),
            attempt=len(entry.attempts) + 1,
            unfinished=entry.status == runs.RUNNING,
            prior=prior,
            made=entry.remote_id,
            remember=lambda remote_id: self._store(
                lambda c: self._remember(c, job, worker, key, remote_id)
            ),
        )
        try:
            result = await asyncio.wait_for(
                get_kind(entry.kind).perform(context),
                timeout=self._settings.action_timeout_seconds,
            )
        except LeaseLost:
            raise
        except ReconnectRequired as error:
            return (
                await self._end(job, worker, key, runs.WAITING, str(error)),
                entry,
                str(error),
            )
        except PermanentError as error:
            return (
                await self._end(job, worker, key, runs.ACTION_FAILED, str(error)),
                entry,
                str(error),
            )
        except Exception as error:
            return (
                await self._retry(job, worker, key, entry, error),
                entry,
                _describe(error),
            )

        def done(connection: Connection) -> None:
            if not queue.finish(connection, job_id=job.id, worker=worker):
                raise LeaseLost(key)
            runs.end_action(
                connection,
                key,
                status=runs.DONE,
                remote_id=result.remote_id,
                output=dict(result.output),
            )

        await self._store(done)
        return runs.DONE, entry, None

    def _start(
        self, connection: Connection, job: ClaimedJob, worker: str, key: str
    ) -> tuple[LedgerEntry, PriorAction | None, dict[str, Any]] | None:
        entry = runs.find_action(connection, key)
        if entry is None or entry.status in (runs.DONE, runs.CANCELLED):
            if not queue.finish(connection, job_id=job.id, worker=worker):
                raise LeaseLost(key)
            return None
        runs.start_action(connection, key, worker)
        prior = runs.prior_done(connection, entry)
        row = connection.execute(
            select(
                Event.id,
                Event.type,
                Event.source,
                Event.entity_id,
                Event.deal_id,
                Event.received_at,
                Event.payload,
            ).where(Event.id == entry.event_id)
        ).one()
        event = {
            **row._mapping,
            "received_at": row.received_at.isoformat(),
            "payload": json.loads(row.payload),
        }
        return (
            entry,
            PriorAction(prior.event_id, prior.remote_id, prior.output or {})
            if prior
            else None,
            event,
        )

    def _remember(
        self,
        connection: Connection,
        job: ClaimedJob,
        worker: str,
        key: str,
        remote_id: str | None,
    ) -> None:
        """Keep what this try made, unless another worker has the job now.

        A worker that stalled past its lease must not replace what the
        worker that took over remembered: that one's later steps act on it.
        """
        if not queue.holds(connection, job_id=job.id, worker=worker):
            raise LeaseLost(key)
        runs.remember_remote_id(connection, key, remote_id)

    async def _end(
        self, job: ClaimedJob, worker: str, key: str, status: str, error: str
    ) -> str:
        def end(connection: Connection) -> None:
            if not queue.finish(connection, job_id=job.id, worker=worker):
                raise LeaseLost(key)
            runs.end_action(connection, key, status=status, error=error)

        await self._store(end)
        return status

    async def _retry(
        self,
        job: ClaimedJob,
        worker: str,
        key: str,
        entry: LedgerEntry,
        error: Exception,
    ) -> str:
        message = _describe(error)
        tries = len(entry.attempts) + 1
        if tries >= self._settings.max_attempts:
            return await self._end(
                job,
                worker,
                key,
                runs.ACTION_FAILED,
                f"gave up after {tries} attempts; last error: {message}",
            )
        retry_after = error.retry_after if isinstance(error, TransientError) else None
        run_at = utcnow() + timedelta(seconds=self._backoff.delay(tries, retry_after))

        def retry(connection: Connection) -> None:
            if not queue.retry_later(
                connection, job_id=job.id, worker=worker, run_after=run_at
            ):
                raise LeaseLost(key)
            runs.end_action(
                connection, key, status=runs.SCHEDULED, error=message, run_at=run_at
            )

        await self._store(retry)
        return "retry"


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    kind = type(error).__name__
    return f"{kind}: {text}" if text else kind
