"""The worker's side of Graph subscriptions: ``graph_subscription`` jobs.

A job's ref names its action and subscription (``renew:<id>``):

- ``renew``: every subscription has one, due when half its lifetime is
  left. Run early (the subscription was renewed meanwhile, by a
  ``reauthorizationRequired``), it only moves itself to the new time. Done,
  it queues the next. When Graph no longer has the subscription, it queues
  a ``recreate`` (so that recreations stay in the subscription's order) and
  looks again after ``FAILING_RETRY``.
- ``reauthorize`` (``reauthorizationRequired``), ``recreate``
  (``subscriptionRemoved``), ``resync`` (``missed``, or a OneDrive change).

Failures: transient ones retry with backoff up to ``max_attempts``; then,
or on a permanent one, the subscription is marked ``failing`` with the
reason and the action is tried again after ``FAILING_RETRY``, so that a
subscription heals by itself once its connection is fixed. A job whose
subscription was deleted finishes without doing anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

import structlog
from sqlalchemy import Connection, Engine

from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.connectors.msgraph.errors import GraphNotFound
from brokerhooks.connectors.msgraph.subscriptions import (
    DEDUPE_WINDOW,
    FAILING_RETRY,
    SubscriptionService,
    renew_at,
    resource_kind,
)
from brokerhooks.metrics import Metrics
from brokerhooks.pipeline.process import Backoff
from brokerhooks.store import queue
from brokerhooks.store import subscriptions as store
from brokerhooks.store.database import transaction
from brokerhooks.store.models import SUBSCRIPTION_CREATING
from brokerhooks.store.processing import LeaseLost
from brokerhooks.store.queue import ClaimedJob
from brokerhooks.store.subscriptions import SubscriptionRecord
from brokerhooks.store.types import utcnow

log = structlog.get_logger("brokerhooks.pipeline.subscriptions")

T = TypeVar("T")

# A renewal run this early is not worth a call: it waits for its time.
EARLY_SLACK = timedelta(minutes=1)


class SubscriptionJobs:
    """Runs ``graph_subscription`` jobs."""

    def __init__(
        self,
        *,
        engine: Engine,
        service: SubscriptionService,
        settings: Settings,
        metrics: Metrics | None = None,
    ) -> None:
        self._engine = engine
        self._service = service
        self._settings = settings
        self._metrics = metrics
        self._backoff = Backoff(settings.retry_base_seconds, settings.retry_max_seconds)

    async def aclose(self) -> None:
        return None

    async def run(self, job: ClaimedJob, worker: str) -> str:
        assert job.ref is not None
        action, subscription_id = store.parse_job_ref(job.ref)
        started = time.perf_counter()
        try:
            outcome, error = await self._run(job, worker, action, subscription_id)
        except LeaseLost:
            outcome, error = "lease_lost", "another worker took the job over"
        if self._metrics is not None:
            self._metrics.jobs.labels(job.kind, outcome).inc()
        logger = log.warning if error else log.info
        logger(
            "subscription_job",
            subscription=subscription_id,
            action=action,
            attempt=job.attempts,
            outcome=outcome,
            error=error,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return outcome

    async def _run(
        self, job: ClaimedJob, worker: str, action: str, subscription_id: str
    ) -> tuple[str, str | None]:
        record = await self._store(
            lambda c: store.find_subscription(c, subscription_id)
        )
        if record is None:
            await self._finish(job, worker)
            return "gone", None
        if action == store.RENEW and not _due(record):
            await self._finish(job, worker, renewal=_next_renewal(record))
            return "not_due", None

        try:
            outcome = await self._perform(action, record)
        except GraphNotFound:
            await self._recreate_later(job, worker, record)
            return "gone_at_graph", None
        except TransientError as error:
            if job.attempts < self._settings.max_attempts:
                await self._retry(job, worker, error)
                return "retry", str(error)
            return await self._failed(job, worker, action, record, str(error))
        except PermanentError as error:
            return await self._failed(job, worker, action, record, str(error))

        renewal = None
        if action == store.RENEW:
            renewed = await self._store(
                lambda c: store.find_subscription(c, subscription_id)
            )
            renewal = _next_renewal(renewed) if renewed is not None else None
        await self._finish(job, worker, renewal=renewal)
        return outcome, None

    async def _perform(self, action: str, record: SubscriptionRecord) -> str:
        if action in (store.RENEW, store.REAUTHORIZE):
            await self._service.renew(record.id, recreate_if_gone=False)
            return "renewed"
        if action == store.RECREATE:
            await self._service.recreate(record.id)
            return "recreated"
        reason = (
            "OneDrive said something changed"
            if record.kind == "drive"
            else "Graph said notifications were missed"
        )
        result = await self._service.resync(record.id, reason=reason)
        return "resynced" if not result.delta_link_expired else "rebaselined"

    async def _recreate_later(
        self, job: ClaimedJob, worker: str, record: SubscriptionRecord
    ) -> None:
        def recreate(connection: Connection) -> None:
            if not queue.finish(connection, job_id=job.id, worker=worker):
                raise LeaseLost(job.ref or "")
            store.schedule_job(
                connection,
                broker_id=record.broker_id,
                subscription_id=record.id,
                action=store.RECREATE,
                unless_queued=True,
            )
            if job.ref and job.ref.startswith(f"{store.RENEW}:"):
                store.schedule_job(
                    connection,
                    broker_id=record.broker_id,
                    subscription_id=record.id,
                    action=store.RENEW,
                    run_after=utcnow() + FAILING_RETRY,
                )

        await self._store(recreate)

    async def _failed(
        self,
        job: ClaimedJob,
        worker: str,
        action: str,
        record: SubscriptionRecord,
        reason: str,
    ) -> tuple[str, str]:
        """Mark the subscription failing and try the action again later."""

        def fail(connection: Connection) -> None:
            if not queue.finish(connection, job_id=job.id, worker=worker):
                raise LeaseLost(job.ref or "")
            store.mark_failing(connection, record.id, f"{action}: {reason}")
            store.schedule_job(
                connection,
                broker_id=record.broker_id,
                subscription_id=record.id,
                action=action,
                run_after=utcnow() + FAILING_RETRY,
                # The renewal is the one job that is always there.
                unless_queued=action != store.RENEW,
            )

        await self._store(fail)
        return "failing", reason

    async def _retry(self, job: ClaimedJob, worker: str, error: TransientError) -> None:
        delay = self._backoff.delay(job.attempts, error.retry_after)
        run_after = utcnow() + timedelta(seconds=delay)

        def retry(connection: Connection) -> None:
            if not queue.retry_later(
                connection, job_id=job.id, worker=worker, run_after=run_after
            ):
                raise LeaseLost(job.ref or "")

        await self._store(retry)

    async def _finish(
        self, job: ClaimedJob, worker: str, *, renewal: datetime | None = None
    ) -> None:
        """Finish the job; with ``renewal``, queue the next renewal then."""
        assert job.ref is not None
        _action, subscription_id = store.parse_job_ref(job.ref)
        cutoff = utcnow() - DEDUPE_WINDOW

        def finish(connection: Connection) -> None:
            if not queue.finish(connection, job_id=job.id, worker=worker):
                raise LeaseLost(job.ref or "")
            if renewal is not None:
                store.schedule_job(
                    connection,
                    broker_id=job.broker_id,
                    subscription_id=subscription_id,
                    action=store.RENEW,
                    run_after=renewal,
                )
                # Renewals come every day or so: a good time to forget the
                # notification keys no repeat can match any more.
                store.prune_notification_keys(connection, before=cutoff)

        await self._store(finish)

    async def _store(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with transaction(self._engine, write=True) as connection:
                return work(connection)

        return await asyncio.to_thread(run)


def _due(record: SubscriptionRecord) -> bool:
    if record.status == SUBSCRIPTION_CREATING or record.expires_at is None:
        return True
    return utcnow() + EARLY_SLACK >= _next_renewal(record)


def _next_renewal(record: SubscriptionRecord) -> datetime:
    if record.expires_at is None:
        return utcnow() + FAILING_RETRY
    return renew_at(resource_kind(record.kind), record.expires_at)
