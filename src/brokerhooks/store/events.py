"""Queries on events and deliveries, and the rows ingest writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, select

from brokerhooks.errors import NotFound
from brokerhooks.store import processing, runs
from brokerhooks.store.models import RECEIVED, Broker, Delivery, Event, Job
from brokerhooks.store.queue import PROCESS_EVENT, job_row
from brokerhooks.store.writer import Write

EVENTS: Table = Event.__table__  # type: ignore[assignment]
JOBS: Table = Job.__table__  # type: ignore[assignment]
DELIVERIES: Table = Delivery.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    broker: str
    broker_id: str
    source: str
    type: str
    entity_id: str
    deal_id: str | None
    status: str
    received_at: datetime
    payload: str
    delivery_id: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "broker": self.broker,
            "source": self.source,
            "type": self.type,
            "entity_id": self.entity_id,
            "deal_id": self.deal_id,
            "status": self.status,
            "received_at": self.received_at.isoformat(),
            "payload": json.loads(self.payload),
            "delivery_id": self.delivery_id,
        }


def delivery_write(row: dict[str, Any]) -> Write:
    return Write().add(DELIVERIES, row)


def accepted_event_write(
    event: dict[str, Any], delivery: dict[str, Any], *, ordering_key: str | None
) -> Write:
    """The rows of an accepted delivery: the event, its job, its delivery.

    An unsupported event gets no job: there is nothing to process.
    """
    write = Write().add(EVENTS, event)
    if event["status"] == RECEIVED:
        write.add(
            JOBS,
            job_row(
                kind=PROCESS_EVENT,
                broker_id=event["broker_id"],
                event_id=event["id"],
                ordering_key=ordering_key,
            ),
        )
    return write.add(DELIVERIES, delivery)


_EVENT_COLUMNS = (
    Event.id,
    Broker.name.label("broker"),
    Event.broker_id,
    Event.source,
    Event.type,
    Event.entity_id,
    Event.deal_id,
    Event.status,
    Event.received_at,
    Event.payload,
    Event.delivery_id,
)


def list_events(
    connection: Connection,
    *,
    broker_id: str | None = None,
    type: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[EventRecord]:
    """The newest events first, filtered."""
    query = select(*_EVENT_COLUMNS).join(Broker, Broker.id == Event.broker_id)
    if broker_id is not None:
        query = query.where(Event.broker_id == broker_id)
    if type is not None:
        query = query.where(Event.type == type)
    if status is not None:
        query = query.where(Event.status == status)
    rows = connection.execute(query.order_by(Event.id.desc()).limit(limit)).all()
    return [EventRecord(**row._mapping) for row in rows]


def get_event(connection: Connection, event_id: str) -> EventRecord:
    row = connection.execute(
        select(*_EVENT_COLUMNS)
        .join(Broker, Broker.id == Event.broker_id)
        .where(Event.id == event_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no event with id {event_id}")
    return EventRecord(**row._mapping)


def get_delivery(connection: Connection, delivery_id: str) -> dict[str, Any]:
    row = connection.execute(
        select(DELIVERIES).where(Delivery.id == delivery_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no delivery with id {delivery_id}")
    return dict(row._mapping)


def list_deliveries(connection: Connection, *, limit: int = 50) -> list[dict[str, Any]]:
    rows = connection.execute(
        select(DELIVERIES).order_by(Delivery.received_at.desc()).limit(limit)
    ).all()
    return [dict(row._mapping) for row in rows]


def event_details(connection: Connection, event_id: str) -> dict[str, Any]:
    """Everything known of one event, as JSON-ready data."""
    record = get_event(connection, event_id)
    delivery = get_delivery(connection, record.delivery_id)
    row = connection.execute(
        select(
            Event.status_reason,
            Event.coalesced_into,
            Event.snapshot_id,
            Event.previous_snapshot_id,
            Event.changes,
            Event.processed_at,
            Event.caused_by,
        ).where(Event.id == event_id)
    ).one()
    document = record.as_dict()
    document.update(
        status_reason=row.status_reason,
        coalesced_into=row.coalesced_into,
        processed_at=row.processed_at.isoformat() if row.processed_at else None,
        delivery={
            "id": delivery["id"],
            "received_at": delivery["received_at"].isoformat(),
            "client_address": delivery["client_address"],
            "body_size": delivery["body_size"],
            "body_sha256": delivery["body_sha256"],
        },
        attempts=processing.attempts_of(connection, event_id),
        snapshot=processing.snapshot_data(connection, row.snapshot_id),
        previous=processing.snapshot_data(connection, row.previous_snapshot_id),
        changes=json.loads(row.changes) if row.changes else None,
        caused_by=json.loads(row.caused_by) if row.caused_by else None,
        runs=runs.runs_of_event(connection, event_id),
    )
    return document
