"""Processing one event: coalesce, enrich, diff, decide, record.

Each step that touches the store is its own short transaction; the last one
records the outcome and deletes the job together, and only if this worker
still holds the job's lease. A worker that lost its lease (it stalled and
another worker took over) rolls back, so every event is finished once.

Failures: a ``PermanentError`` parks the event in ``needs_attention`` with
its reason; anything else is retried with exponential backoff and jitter
until ``max_attempts``, then the event is ``dead``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, Engine

from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.ingest.msgraph_events import SOURCE as GRAPH_SOURCE
from brokerhooks.metrics import Metrics
from brokerhooks.pipeline import echoes, enrich
from brokerhooks.pipeline.changes import compute_changes
from brokerhooks.pipeline.decide import Verdict, decide, rule_context
from brokerhooks.pipeline.decide import record as record_runs
from brokerhooks.pipeline.enrich import ReaderFactory, graph_changes
from brokerhooks.pipeline.graph_source import GraphFetched, GraphSource, graph_context
from brokerhooks.pipeline.rulebook import RuleBook
from brokerhooks.rules.model import Rule
from brokerhooks.store import contact_index, processing, subscriptions
from brokerhooks.store.brokers import get_broker_by_id
from brokerhooks.store.database import transaction
from brokerhooks.store.processing import EventToProcess, LeaseLost, StoredSnapshot
from brokerhooks.store.queue import ClaimedJob
from brokerhooks.store.types import utcnow

log = structlog.get_logger("brokerhooks.pipeline")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before try ``attempt + 1``: exponential, jittered."""
        ceiling = min(self.cap, self.base * 2 ** (attempt - 1))
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        return float(max(delay, retry_after or 0.0))


class EventProcessor:
    """Runs ``process_event`` jobs."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        readers: ReaderFactory,
        metrics: Metrics | None = None,
        graph: GraphSource | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._readers = readers
        self._metrics = metrics
        self._graph = graph
        self._backoff = Backoff(settings.retry_base_seconds, settings.retry_max_seconds)
        self._rulebook = RuleBook()

    async def aclose(self) -> None:
        """Close the connections of the readers, if they keep any."""
        close = getattr(self._readers, "aclose", None)
        if close is not None:
            await close()

    async def _store(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with transaction(self._engine, write=True) as connection:
                return work(connection)

        return await asyncio.to_thread(run)

    async def run(self, job: ClaimedJob, worker: str) -> str:
        """Process the job's event; return the outcome."""
        assert job.event_id is not None
        started = time.perf_counter()
        event, source = await self._store(
            lambda c: (
                processing.load_event(c, job.event_id or ""),
                subscriptions.event_source(c, job.event_id or ""),
            )
        )
        try:
            outcome, error = await self._run(job, worker, event, source)
        except LeaseLost:
            outcome, error = "lease_lost", "another worker took the job over"
        if self._metrics is not None:
            self._metrics.jobs.labels(job.kind, outcome).inc()
        logger = log.info if outcome in ("done", "coalesced") else log.warning
        logger(
            "attempt",
            event_id=event.id,
            type=event.type,
            attempt=job.attempts,
            outcome=outcome,
            error=error,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return outcome

    async def _run(
        self, job: ClaimedJob, worker: str, event: EventToProcess, source: str
    ) -> tuple[str, str | None]:
        window = self._settings.coalesce_seconds
        successor = await self._store(
            lambda c: processing.burst_successor(c, event, window)
        )
        if successor is not None:
            await self._store(
                lambda c: processing.coalesce(
                    c, job_id=job.id, worker=worker, event_id=event.id, into=successor
                )
            )
            return "coalesced", None

        attempt_id = await self._store(
            lambda c: processing.start_attempt(
                c, event_id=event.id, number=job.attempts, worker=worker
            )
        )
        fetched: enrich.Fetched
        try:
            if source == GRAPH_SOURCE:
                # Graph events learn their final type and deal here.
                fetched, event = await self._graph_source().fetch(event)
            else:
                fetched = await enrich.fetch(self._readers(event.broker_id), event)
        except PermanentError as error:
            reason = str(error)
            await self._store(
                lambda c: processing.park(
                    c,
                    job_id=job.id,
                    worker=worker,
                    event_id=event.id,
                    attempt_id=attempt_id,
                    status=processing.NEEDS_ATTENTION,
                    reason=reason,
                )
            )
            return processing.NEEDS_ATTENTION, reason
        except Exception as error:
            return await self._failed(job, worker, event, attempt_id, error)

        previous, rules, broker, caused_by = await self._store(
            lambda c: self._read(c, event, fetched)
        )
        diff = graph_changes if isinstance(fetched, GraphFetched) else compute_changes
        changes = diff(
            fetched.subject, previous.data if previous else None, fetched.data
        )
        context = rule_context(
            event,
            fetched,
            previous.data if previous else None,
            changes,
            broker,
            utcnow(),
            caused_by,
        )
        if isinstance(fetched, GraphFetched):
            context = graph_context(context, fetched)
        verdicts = decide(rules, context)
        await self._store(
            lambda c: self._record(
                c,
                job,
                worker,
                event,
                attempt_id,
                fetched,
                previous,
                changes,
                verdicts,
                context,
                caused_by,
            )
        )
        return processing.DONE, None

    def _read(
        self, connection: Connection, event: EventToProcess, fetched: enrich.Fetched
    ) -> tuple[
        StoredSnapshot | None, list[Rule], dict[str, Any], dict[str, Any] | None
    ]:
        """What deciding needs from the store.

        The previous snapshot, the rules, the broker, and the action that
        made the event's item if the event is an echo of one.
        """
        if event.snapshot_id is not None:
            # A replay compares with what the first run compared with.
            previous = (
                processing.get_snapshot(connection, event.previous_snapshot_id)
                if event.previous_snapshot_id is not None
                else None
            )
        else:
            previous = processing.latest_snapshot(
                connection,
                broker_id=event.broker_id,
                subject=fetched.subject,
                entity_id=fetched.entity_id,
            )
        rules = self._rulebook.triggered_by(connection, event.broker_id, event.type)
        record = get_broker_by_id(connection, event.broker_id)
        broker = {
            "id": record.id,
            "name": record.name,
            "timezone": self._settings.timezone,
        }
        caused_by = echoes.cause_of(
            connection,
            broker_id=event.broker_id,
            event_type=event.type,
            entity_id=fetched.entity_id,
            data=fetched.data,
        )
        return previous, rules, broker, caused_by

    def _record(
        self,
        connection: Connection,
        job: ClaimedJob,
        worker: str,
        event: EventToProcess,
        attempt_id: int,
        fetched: enrich.Fetched,
        previous: StoredSnapshot | None,
        changes: dict[str, Any],
        verdicts: list[Verdict],
        context: dict[str, Any],
        caused_by: dict[str, Any] | None,
    ) -> None:
        """Store snapshots, changes and runs and finish the job, all at once."""
        snapshot_ids = [
            processing.add_snapshot(
                connection,
                broker_id=event.broker_id,
                subject=subject,
                entity_id=entity_id,
                event_id=event.id,
                data=data,
            )
            for subject, entity_id, data in fetched.all()
        ]
        contact_index.index_snapshots(connection, event.broker_id, fetched.all())
        if isinstance(fetched, GraphFetched):
            subscriptions.refine_event(
                connection, event.id, type=event.type, deal_id=event.deal_id
            )
        record_runs(connection, event, verdicts, context)
        processing.complete(
            connection,
            job_id=job.id,
            worker=worker,
            event_id=event.id,
            attempt_id=attempt_id,
            snapshot_id=snapshot_ids[0],
            previous_snapshot_id=previous.id if previous else None,
            changes=changes,
            caused_by=caused_by,
        )

    def _graph_source(self) -> GraphSource:
        if self._graph is None:
            raise PermanentError(
                "this worker was built without Microsoft Graph; it cannot process "
                "Graph events (see pipeline.service.build_worker)"
            )
        return self._graph

    async def _failed(
        self,
        job: ClaimedJob,
        worker: str,
        event: EventToProcess,
        attempt_id: int,
        error: Exception,
    ) -> tuple[str, str]:
        message = _describe(error)
        if job.attempts >= self._settings.max_attempts:
            reason = f"gave up after {job.attempts} attempts; last error: {message}"
            await self._store(
                lambda c: processing.park(
                    c,
                    job_id=job.id,
                    worker=worker,
                    event_id=event.id,
                    attempt_id=attempt_id,
                    status=processing.DEAD,
                    reason=reason,
                )
            )
            return processing.DEAD, reason

        retry_after = error.retry_after if isinstance(error, TransientError) else None
        delay = self._backoff.delay(job.attempts, retry_after)
        run_after = utcnow() + timedelta(seconds=delay)
        await self._store(
            lambda c: processing.schedule_retry(
                c,
                job_id=job.id,
                worker=worker,
                event_id=event.id,
                attempt_id=attempt_id,
                run_after=run_after,
                error=message,
            )
        )
        return "retry", message


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    kind = type(error).__name__
    return f"{kind}: {text}" if text else kind
