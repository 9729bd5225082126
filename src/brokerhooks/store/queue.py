"""The job queue, kept in the store itself.

Storing an event and queueing its job are one transaction (see
``store.events.accepted_event_write``). Workers claim jobs under a lease;
on PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so that any number of
worker processes share one database, on SQLite the claim runs under the
database's single write lock.

Order: jobs that share an ``ordering_key`` (one deal, one contact) run one at
a time, in ``id`` order. A finished job is deleted, so a job is blocked
exactly when an earlier job with its key still exists. A job whose lease
expired (its worker died) is claimed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Executable,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import aliased

from brokerhooks.store.models import QUEUED, RUNNING, Job
from brokerhooks.store.types import utcnow

PROCESS_EVENT = "process_event"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    kind: str
    broker_id: str
    event_id: str | None
    ref: str | None
    ordering_key: str | None
    attempts: int
    """How many times this job has been claimed, this claim included."""


def ordering_key(broker_id: str, entity_id: str, deal_id: str | None) -> str:
    """Events of one deal (its notes included) or of one contact run in order."""
    if deal_id is not None:
        return f"{broker_id}:deal:{deal_id}"
    return f"{broker_id}:contact:{entity_id}"


def job_row(
    *,
    kind: str,
    broker_id: str,
    event_id: str | None,
    ordering_key: str | None,
    run_after: datetime | None = None,
    ref: str | None = None,
) -> dict[str, Any]:
    now = utcnow()
    return {
        "kind": kind,
        "broker_id": broker_id,
        "event_id": event_id,
        "ref": ref,
        "ordering_key": ordering_key,
        "status": QUEUED,
        "run_after": run_after or now,
        "attempts": 0,
        "created_at": now,
    }


def enqueue(connection: Connection, **fields: Any) -> None:
    connection.execute(insert(Job).values(**job_row(**fields)))


def _claim_statements() -> tuple[list[Select[int]], Executable, Executable]:
    """The statements of a claim, built once: building them cost more than running.

    Parameters: ``now``, ``limit``, ``ids``, ``worker``, ``expires``.
    """
    earlier = aliased(Job)
    blocked = exists().where(
        earlier.ordering_key == Job.ordering_key, earlier.id < Job.id
    )
    now = bindparam("now", type_=Job.run_after.type)
    runnable = (
        and_(Job.status == RUNNING, Job.lease_expires_at < now),
        and_(Job.status == QUEUED, Job.run_after <= now),
    )
    candidates = [
        select(Job.id)
        .where(condition, ~blocked)
        .order_by(Job.status, Job.id)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True, of=Job)
        for condition in runnable
    ]
    ids = bindparam("ids", expanding=True, type_=Integer)
    take = (
        update(Job)
        .where(Job.id.in_(ids))
        .values(
            status=RUNNING,
            lease_owner=bindparam("worker", type_=Job.lease_owner.type),
            lease_expires_at=bindparam("expires", type_=Job.lease_expires_at.type),
            attempts=Job.attempts + 1,
        )
    )
    taken = (
        select(
            Job.id,
            Job.kind,
            Job.broker_id,
            Job.event_id,
            Job.ref,
            Job.ordering_key,
            Job.attempts,
        )
        .where(Job.id.in_(ids))
        .order_by(Job.id)
    )
    return candidates, take, taken


_CANDIDATES, _TAKE, _TAKEN = _claim_statements()


def claim(
    connection: Connection, *, worker: str, limit: int, lease_seconds: float
) -> list[ClaimedJob]:
    """Claim up to ``limit`` runnable jobs for ``worker``.

    Runnable: queued and due, or running on a lease that has expired; and
    the first job of its ordering key. The two kinds are looked up apart,
    each in id order through an index on (status, id), so that a claim
    reads about as many rows as it takes however long the queue is.
    """
    now = utcnow()
    ids: list[int] = []
    for candidates in _CANDIDATES:
        ids.extend(connection.scalars(candidates, {"now": now, "limit": limit}))
    ids = sorted(ids)[:limit]
    if not ids:
        return []
    expires = now + timedelta(seconds=lease_seconds)
    connection.execute(_TAKE, {"ids": ids, "worker": worker, "expires": expires})
    rows = connection.execute(_TAKEN, {"ids": ids}).all()
    return [ClaimedJob(**row._mapping) for row in rows]


def extend_leases(
    connection: Connection, *, worker: str, job_ids: list[int], lease_seconds: float
) -> int:
    """Push the leases of a worker's running jobs forward; return how many."""
    if not job_ids:
        return 0
    result = connection.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.lease_owner == worker, Job.status == RUNNING)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
    )
    return result.rowcount


def holds(connection: Connection, *, job_id: int, worker: str) -> bool:
    """Whether ``worker`` still holds the job, locked until the transaction ends.

    For work written while the job runs: another worker cannot take the job
    over between this check and the commit.
    """
    held = connection.scalar(
        select(Job.id)
        .where(Job.id == job_id, Job.lease_owner == worker, Job.status == RUNNING)
        .with_for_update()
    )
    return held is not None


def finish(connection: Connection, *, job_id: int, worker: str) -> bool:
    """Delete a finished job if ``worker`` still holds it.

    False means the lease was lost (another worker took the job over); the
    caller must roll its transaction back so the work counts once.
    """
    result = connection.execute(
        delete(Job).where(
            Job.id == job_id, Job.lease_owner == worker, Job.status == RUNNING
        )
    )
    return result.rowcount == 1


def retry_later(
    connection: Connection, *, job_id: int, worker: str, run_after: datetime
) -> bool:
    """Put a failed job back in the queue until ``run_after``."""
    result = connection.execute(
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == worker, Job.status == RUNNING)
        .values(
            status=QUEUED, run_after=run_after, lease_owner=None, lease_expires_at=None
        )
    )
    return result.rowcount == 1


def release(connection: Connection, *, job_ids: list[int], worker: str) -> int:
    """Give unfinished jobs back at shutdown; the interrupted try is not counted."""
    if not job_ids:
        return 0
    result = connection.execute(
        update(Job)
        .where(Job.id.in_(job_ids), Job.lease_owner == worker, Job.status == RUNNING)
        .values(
            status=QUEUED,
            lease_owner=None,
            lease_expires_at=None,
            attempts=Job.attempts - 1,
        )
    )
    return result.rowcount


def pending_job_for_event(connection: Connection, event_id: str) -> int | None:
    return connection.scalar(
        select(Job.id).where(Job.event_id == event_id, Job.kind == PROCESS_EVENT)
    )


def count_jobs(connection: Connection) -> int:
    return connection.scalar(select(func.count()).select_from(Job)) or 0
