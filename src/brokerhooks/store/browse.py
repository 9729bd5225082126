"""Queries for people browsing events: filters, pages, counts.

Used by the console and the JSON API alike. Every query takes the broker
it is limited to (``None`` only for admins, who see every broker), so that
tenant isolation is decided in one place.

Pages are keyset pages on the event id (newest first): ``before`` is the
last id of the previous page. They stay fast however many events exist.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, Select, func, select

from brokerhooks.store.events import _EVENT_COLUMNS, EventRecord
from brokerhooks.store.models import ActionRecord, Broker, Event, Run
from brokerhooks.store.types import utcnow


@dataclass(frozen=True, slots=True)
class EventFilter:
    broker_id: str | None = None
    """The broker the viewer may see; None means every broker (admins)."""
    type: str | None = None
    status: str | None = None
    deal_id: str | None = None
    entity_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    """Searched for in the stored payload."""


SelectT = TypeVar("SelectT", bound=Select[*tuple[Any, ...]])


def _filtered(query: SelectT, where: EventFilter) -> SelectT:
    if where.broker_id is not None:
        query = query.where(Event.broker_id == where.broker_id)
    if where.type:
        query = query.where(Event.type == where.type)
    if where.status:
        query = query.where(Event.status == where.status)
    if where.deal_id:
        query = query.where(Event.deal_id == where.deal_id)
    if where.entity_id:
        query = query.where(Event.entity_id == where.entity_id)
    if where.since is not None:
        query = query.where(Event.received_at >= where.since)
    if where.until is not None:
        query = query.where(Event.received_at < where.until)
    if where.text:
        escaped = (
            where.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        )
        query = query.where(Event.payload.like(f"%{escaped}%", escape="\\"))
    return query


def page_events(
    connection: Connection,
    where: EventFilter,
    *,
    before: str | None = None,
    limit: int = 50,
) -> tuple[list[EventRecord], str | None]:
    """One page of events, newest first, and the cursor of the next page."""
    query = _filtered(
        select(*_EVENT_COLUMNS).join(Broker, Broker.id == Event.broker_id), where
    )
    if before is not None:
        query = query.where(Event.id < before)
    rows = connection.execute(query.order_by(Event.id.desc()).limit(limit + 1)).all()
    records = [EventRecord(**row._mapping) for row in rows[:limit]]
    cursor = records[-1].id if len(rows) > limit else None
    return records, cursor


def event_broker(connection: Connection, event_id: str) -> str | None:
    """The broker an event belongs to (None if there is no such event)."""
    return connection.scalar(select(Event.broker_id).where(Event.id == event_id))


def status_counts(connection: Connection, broker_id: str | None) -> dict[str, int]:
    query = select(Event.status, func.count()).group_by(Event.status)
    if broker_id is not None:
        query = query.where(Event.broker_id == broker_id)
    return {str(row[0]): int(row[1]) for row in connection.execute(query)}


def events_per_hour(
    connection: Connection, broker_id: str | None, *, hours: int = 24
) -> list[tuple[datetime, int]]:
    """Events received in each of the last ``hours`` hours, oldest first."""
    now = utcnow()
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    query = select(Event.received_at).where(Event.received_at >= start)
    if broker_id is not None:
        query = query.where(Event.broker_id == broker_id)
    counts: Counter[datetime] = Counter(
        moment.replace(minute=0, second=0, microsecond=0)
        for moment in connection.scalars(query)
    )
    return [
        (start + timedelta(hours=n), counts.get(start + timedelta(hours=n), 0))
        for n in range(hours)
    ]


def failed_runs(
    connection: Connection, broker_id: str | None, *, since: datetime
) -> int:
    query = (
        select(func.count())
        .select_from(Run)
        .where(Run.status == "failed", Run.created_at >= since)
    )
    if broker_id is not None:
        query = query.where(Run.broker_id == broker_id)
    return connection.scalar(query) or 0


def waiting_actions(connection: Connection, broker_id: str | None) -> int:
    query = (
        select(func.count())
        .select_from(ActionRecord)
        .where(ActionRecord.status == "waiting")
    )
    if broker_id is not None:
        query = query.where(ActionRecord.broker_id == broker_id)
    return connection.scalar(query) or 0


def page_runs(
    connection: Connection,
    *,
    broker_id: str | None,
    rule_id: str | None = None,
    status: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[dict[str, object]], int | None]:
    """One page of runs, newest first, and the cursor of the next page."""
    query = select(
        Run.id,
        Run.broker_id,
        Run.event_id,
        Run.rule_id,
        Run.outcome,
        Run.status,
        Run.created_at,
        Run.finished_at,
    )
    if broker_id is not None:
        query = query.where(Run.broker_id == broker_id)
    if rule_id:
        query = query.where(Run.rule_id == rule_id)
    if status:
        query = query.where(Run.status == status)
    if before is not None:
        query = query.where(Run.id < before)
    rows = connection.execute(query.order_by(Run.id.desc()).limit(limit + 1)).all()
    runs = [dict(row._mapping) for row in rows[:limit]]
    cursor = int(str(runs[-1]["id"])) if len(rows) > limit else None
    return runs, cursor
