"""Queries of event processing: attempts, snapshots, outcomes, replay."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from brokerhooks.store import queue
from brokerhooks.store.models import (
    QUEUED,
    RECEIVED,
    UNSUPPORTED,
    Attempt,
    Event,
    Job,
    Snapshot,
)
from brokerhooks.store.types import utcnow

PROCESSING = "processing"
DONE = "done"
COALESCED = "coalesced"
DEAD = "dead"
NEEDS_ATTENTION = "needs_attention"


class LeaseLost(Exception):
    """The job was taken over by another worker; this one's work must not count."""


@dataclass(frozen=True, slots=True)
class EventToProcess:
    id: str
    broker_id: str
    type: str
    entity_id: str
    deal_id: str | None
    received_at: datetime
    payload: str
    snapshot_id: int | None
    previous_snapshot_id: int | None


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    id: int
    data: dict[str, Any]


def load_event(connection: Connection, event_id: str) -> EventToProcess:
    row = connection.execute(
        select(
            Event.id,
            Event.broker_id,
            Event.type,
            Event.entity_id,
            Event.deal_id,
            Event.received_at,
            Event.payload,
            Event.snapshot_id,
            Event.previous_snapshot_id,
        ).where(Event.id == event_id)
    ).one()
    return EventToProcess(**row._mapping)


def burst_successor(
    connection: Connection, event: EventToProcess, window_seconds: float
) -> str | None:
    """The latest queued event of the same burst, if any.

    A burst is the same event type for the same entity of the same broker,
    received within ``window_seconds`` after ``event`` and still waiting in
    the queue. It is processed once, as the latest of them.
    """
    if window_seconds <= 0:
        return None
    until = event.received_at + timedelta(seconds=window_seconds)
    return connection.scalar(
        select(Event.id)
        .join(Job, Job.event_id == Event.id)
        .where(
            Event.broker_id == event.broker_id,
            Event.type == event.type,
            Event.entity_id == event.entity_id,
            Event.id > event.id,
            Event.received_at <= until,
            Job.kind == queue.PROCESS_EVENT,
            Job.status == QUEUED,
        )
        .order_by(Event.id.desc())
        .limit(1)
    )


def coalesce(
    connection: Connection, *, job_id: int, worker: str, event_id: str, into: str
) -> None:
    """Mark ``event_id`` coalesced into ``into`` (and whatever pointed at it)."""
    if not queue.finish(connection, job_id=job_id, worker=worker):
        raise LeaseLost(event_id)
    now = utcnow()
    connection.execute(
        update(Event)
        .where((Event.id == event_id) | (Event.coalesced_into == event_id))
        .values(
            status=COALESCED,
            coalesced_into=into,
            status_reason=f"processed as part of event {into}",
            processed_at=now,
        )
    )


def start_attempt(
    connection: Connection, *, event_id: str, number: int, worker: str
) -> int:
    connection.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(status=PROCESSING, status_reason=None)
    )
    # A try still marked running belonged to a worker that died: its lease
    # expired, which is why this worker holds the job now.
    connection.execute(
        update(Attempt)
        .where(Attempt.event_id == event_id, Attempt.outcome == "running")
        .values(
            outcome="abandoned",
            error="the worker stopped responding; its lease expired",
            finished_at=utcnow(),
        )
    )
    result = connection.execute(
        insert(Attempt).values(
            event_id=event_id,
            number=number,
            worker=worker,
            started_at=utcnow(),
            outcome="running",
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def get_snapshot(connection: Connection, snapshot_id: int) -> StoredSnapshot:
    data = connection.scalar(select(Snapshot.data).where(Snapshot.id == snapshot_id))
    assert data is not None
    return StoredSnapshot(snapshot_id, json.loads(data))


def latest_snapshot(
    connection: Connection,
    *,
    broker_id: str,
    subject: str,
    entity_id: str,
    before: int | None = None,
) -> StoredSnapshot | None:
    """The entity's latest snapshot, or the latest taken before snapshot ``before``."""
    query = select(Snapshot.id, Snapshot.data).where(
        Snapshot.broker_id == broker_id,
        Snapshot.subject == subject,
        Snapshot.entity_id == entity_id,
    )
    if before is not None:
        query = query.where(Snapshot.id < before)
    row = connection.execute(query.order_by(Snapshot.id.desc()).limit(1)).one_or_none()
    if row is None:
        return None
    return StoredSnapshot(row.id, json.loads(row.data))


def add_snapshot(
    connection: Connection,
    *,
    broker_id: str,
    subject: str,
    entity_id: str,
    event_id: str,
    data: dict[str, Any],
) -> int:
    result = connection.execute(
        insert(Snapshot).values(
            broker_id=broker_id,
            subject=subject,
            entity_id=entity_id,
            event_id=event_id,
            fetched_at=utcnow(),
            data=json.dumps(data, sort_keys=True),
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def complete(
    connection: Connection,
    *,
    job_id: int,
    worker: str,
    event_id: str,
    attempt_id: int,
    snapshot_id: int | None,
    previous_snapshot_id: int | None,
    changes: dict[str, Any],
    caused_by: dict[str, Any] | None = None,
) -> None:
    """Record a processed event; LeaseLost if another worker took the job."""
    if not queue.finish(connection, job_id=job_id, worker=worker):
        raise LeaseLost(event_id)
    now = utcnow()
    connection.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(
            status=DONE,
            status_reason=None,
            snapshot_id=snapshot_id,
            previous_snapshot_id=previous_snapshot_id,
            changes=json.dumps(changes, sort_keys=True),
            processed_at=now,
            caused_by=json.dumps(caused_by, sort_keys=True) if caused_by else None,
        )
    )
    _end_attempt(connection, attempt_id, "done", None)


def caused_by(connection: Connection, event_id: str) -> dict[str, Any] | None:
    """The action that caused a processed event, if brokerhooks' own did."""
    found = connection.scalar(select(Event.caused_by).where(Event.id == event_id))
    return json.loads(found) if found else None


def park(
    connection: Connection,
    *,
    job_id: int,
    worker: str,
    event_id: str,
    attempt_id: int,
    status: str,
    reason: str,
) -> None:
    """Stop an event as ``dead`` or ``needs_attention`` with a reason."""
    if not queue.finish(connection, job_id=job_id, worker=worker):
        raise LeaseLost(event_id)
    connection.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(status=status, status_reason=reason, processed_at=utcnow())
    )
    _end_attempt(connection, attempt_id, status, reason)


def schedule_retry(
    connection: Connection,
    *,
    job_id: int,
    worker: str,
    event_id: str,
    attempt_id: int,
    run_after: datetime,
    error: str,
) -> None:
    if not queue.retry_later(
        connection, job_id=job_id, worker=worker, run_after=run_after
    ):
        raise LeaseLost(event_id)
    connection.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(
            status=RECEIVED,
            status_reason=f"retrying at {run_after:%Y-%m-%d %H:%M:%S} UTC: {error}",
        )
    )
    _end_attempt(connection, attempt_id, "retry", error)


def release_running_attempts(
    connection: Connection, *, worker: str, event_ids: list[str]
) -> None:
    """Close the attempts a stopping worker leaves unfinished."""
    connection.execute(
        update(Attempt)
        .where(
            Attempt.event_id.in_(event_ids),
            Attempt.worker == worker,
            Attempt.outcome == "running",
        )
        .values(outcome="released", error="worker shut down", finished_at=utcnow())
    )
    connection.execute(
        update(Event)
        .where(Event.id.in_(event_ids), Event.status == PROCESSING)
        .values(status=RECEIVED)
    )


def _end_attempt(
    connection: Connection, attempt_id: int, outcome: str, error: str | None
) -> None:
    connection.execute(
        update(Attempt)
        .where(Attempt.id == attempt_id)
        .values(outcome=outcome, error=error, finished_at=utcnow())
    )


def replay(connection: Connection, event_id: str) -> bool:
    """Queue an event to be processed again from the start.

    False if it is already waiting or running, or if it is unsupported.
    """
    row = connection.execute(
        select(Event.broker_id, Event.entity_id, Event.deal_id, Event.status).where(
            Event.id == event_id
        )
    ).one()
    if row.status == UNSUPPORTED:
        return False
    if queue.pending_job_for_event(connection, event_id) is not None:
        return False
    queue.enqueue(
        connection,
        kind=queue.PROCESS_EVENT,
        broker_id=row.broker_id,
        event_id=event_id,
        ordering_key=queue.ordering_key(row.broker_id, row.entity_id, row.deal_id),
    )
    connection.execute(
        update(Event)
        .where(Event.id == event_id)
        .values(status=RECEIVED, status_reason="replay requested", coalesced_into=None)
    )
    return True


def select_for_replay(
    connection: Connection,
    *,
    broker_id: str | None,
    status: str | None,
    since: datetime | None,
    limit: int,
) -> list[str]:
    query = select(Event.id).where(Event.status != UNSUPPORTED)
    if broker_id is not None:
        query = query.where(Event.broker_id == broker_id)
    if status is not None:
        query = query.where(Event.status == status)
    if since is not None:
        query = query.where(Event.received_at >= since)
    return list(connection.scalars(query.order_by(Event.id).limit(limit)))


def attempts_of(connection: Connection, event_id: str) -> list[dict[str, Any]]:
    rows = connection.execute(
        select(
            Attempt.number,
            Attempt.worker,
            Attempt.started_at,
            Attempt.finished_at,
            Attempt.outcome,
            Attempt.error,
        )
        .where(Attempt.event_id == event_id)
        .order_by(Attempt.id)
    ).all()
    return [
        {
            **row._mapping,
            "started_at": row.started_at.isoformat(),
            "finished_at": row.finished_at.isoformat() if row.finished_at else None,
        }
        for row in rows
    ]


def snapshot_data(connection: Connection, snapshot_id: int | None) -> Any:
    if snapshot_id is None:
        return None
    data = connection.scalar(select(Snapshot.data).where(Snapshot.id == snapshot_id))
    return json.loads(data) if data is not None else None


@dataclass(frozen=True, slots=True)
class ProcessedEvent:
    """A processed event with what its run saw: for back-tests."""

    event: EventToProcess
    snapshots: dict[str, dict[str, Any]]
    previous: dict[str, Any] | None
    changes: dict[str, Any]
    caused_by: dict[str, Any] | None = None


def processed_events(
    connection: Connection, *, broker_id: str, since: datetime, limit: int
) -> list[ProcessedEvent]:
    """The broker's processed events since ``since``, oldest first."""
    rows = connection.execute(
        select(Event.__table__)
        .where(
            Event.broker_id == broker_id,
            Event.received_at >= since,
            Event.snapshot_id.is_not(None),
        )
        .order_by(Event.id)
        .limit(limit)
    ).all()
    found = []
    for row in rows:
        snapshots = {
            snapshot.subject: json.loads(snapshot.data)
            for snapshot in connection.execute(
                select(Snapshot.subject, Snapshot.data)
                .where(Snapshot.event_id == row.id)
                .order_by(Snapshot.id)
            )
        }
        found.append(
            ProcessedEvent(
                event=EventToProcess(
                    id=row.id,
                    broker_id=row.broker_id,
                    type=row.type,
                    entity_id=row.entity_id,
                    deal_id=row.deal_id,
                    received_at=row.received_at,
                    payload=row.payload,
                    snapshot_id=row.snapshot_id,
                    previous_snapshot_id=row.previous_snapshot_id,
                ),
                snapshots=snapshots,
                previous=snapshot_data(connection, row.previous_snapshot_id),
                changes=json.loads(row.changes) if row.changes else {},
                caused_by=json.loads(row.caused_by) if row.caused_by else None,
            )
        )
    return found
