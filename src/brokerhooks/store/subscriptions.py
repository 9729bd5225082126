"""Queries on Microsoft Graph subscriptions, their jobs and notifications.

A subscription row outlives Graph's subscription id: recreating the
subscription at Graph changes ``graph_subscription_id`` and the client
state, not the row. Records handed to callers carry no client state; only
``client_states`` (for ingest) reads it, still encrypted.

Subscription work runs as ``graph_subscription`` jobs whose ``ref`` is
``<action>:<subscription id>``. Reauthorizations, recreations and
resynchronisations of one subscription share an ordering key, so that they
never overlap (two resynchronisations from one delta link would store the
same changes twice). The renewal, queued days ahead, has none: a queued job
blocks the later jobs of its key until it has run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from brokerhooks.errors import Conflict, NotFound
from brokerhooks.ingest.msgraph_events import SOURCE
from brokerhooks.store.events import DELIVERIES, EVENTS, JOBS
from brokerhooks.store.models import (
    QUEUED,
    RECEIVED,
    SUBSCRIPTION_ACTIVE,
    SUBSCRIPTION_CREATING,
    SUBSCRIPTION_FAILING,
    UNSUPPORTED,
    Broker,
    Event,
    GraphNotificationKey,
    GraphSubscription,
    Job,
    M365Connection,
)
from brokerhooks.store.queue import PROCESS_EVENT, job_row, ordering_key
from brokerhooks.store.types import utcnow, uuid7

SUBSCRIPTION_JOB = "graph_subscription"
# What a subscription job does (the first part of its ref).
RENEW = "renew"
REAUTHORIZE = "reauthorize"
RECREATE = "recreate"
RESYNC = "resync"
ACTIONS = (RENEW, REAUTHORIZE, RECREATE, RESYNC)


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """A subscription as shown to people: no client state."""

    id: str
    broker_id: str
    broker_name: str
    connection_id: str
    connection_name: str
    kind: str
    resource: str
    list_name: str | None
    change_types: str
    graph_subscription_id: str | None
    expires_at: datetime | None
    status: str
    last_error: str | None
    delta_link: str | None
    last_notification_at: datetime | None
    last_lifecycle_event: str | None
    renewed_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NotificationTarget:
    """What ingest needs to check and route a notification."""

    id: str
    broker_id: str
    kind: str
    status: str
    graph_subscription_id: str | None
    client_state_encrypted: str


_COLUMNS = (
    GraphSubscription.id,
    GraphSubscription.broker_id,
    Broker.name.label("broker_name"),
    GraphSubscription.connection_id,
    M365Connection.name.label("connection_name"),
    GraphSubscription.kind,
    GraphSubscription.resource,
    GraphSubscription.list_name,
    GraphSubscription.change_types,
    GraphSubscription.graph_subscription_id,
    GraphSubscription.expires_at,
    GraphSubscription.status,
    GraphSubscription.last_error,
    GraphSubscription.delta_link,
    GraphSubscription.last_notification_at,
    GraphSubscription.last_lifecycle_event,
    GraphSubscription.renewed_at,
    GraphSubscription.created_at,
    GraphSubscription.updated_at,
)


def _select() -> Any:
    return (
        select(*_COLUMNS)
        .join(Broker, Broker.id == GraphSubscription.broker_id)
        .join(M365Connection, M365Connection.id == GraphSubscription.connection_id)
    )


def _record(row: Row[Any]) -> SubscriptionRecord:
    return SubscriptionRecord(**row._mapping)


# Subscriptions.


def add_subscription(
    connection: Connection,
    *,
    broker_id: str,
    connection_id: str,
    kind: str,
    resource: str,
    list_name: str | None,
    change_types: Sequence[str],
    client_state_encrypted: str,
) -> SubscriptionRecord:
    """Keep a subscription about to be created at Graph (``creating``).

    Conflict if the connection already watches that resource.
    """
    taken = Conflict(
        f"this connection already has a {kind} subscription for {resource}; "
        "see `brokerhooks subscriptions list`"
    )
    if connection.scalar(
        select(GraphSubscription.id).where(
            GraphSubscription.connection_id == connection_id,
            GraphSubscription.kind == kind,
            GraphSubscription.resource == resource,
        )
    ):
        raise taken
    now = utcnow()
    subscription_id = uuid7()
    try:
        connection.execute(
            insert(GraphSubscription).values(
                id=subscription_id,
                broker_id=broker_id,
                connection_id=connection_id,
                kind=kind,
                resource=resource,
                list_name=list_name,
                change_types=",".join(change_types),
                client_state_encrypted=client_state_encrypted,
                status=SUBSCRIPTION_CREATING,
                created_at=now,
                updated_at=now,
            )
        )
    except IntegrityError:
        raise taken from None
    return get_subscription(connection, subscription_id)


def get_subscription(
    connection: Connection, subscription_id: str
) -> SubscriptionRecord:
    record = find_subscription(connection, subscription_id)
    if record is None:
        raise NotFound(
            f"no Microsoft Graph subscription with id {subscription_id}; "
            "see `brokerhooks subscriptions list`"
        )
    return record


def find_subscription(
    connection: Connection, subscription_id: str
) -> SubscriptionRecord | None:
    row = connection.execute(
        _select().where(GraphSubscription.id == subscription_id)
    ).one_or_none()
    return _record(row) if row is not None else None


def list_subscriptions(
    connection: Connection,
    *,
    broker_id: str | None = None,
    connection_id: str | None = None,
) -> list[SubscriptionRecord]:
    query = _select().order_by(
        Broker.name, M365Connection.name, GraphSubscription.kind, GraphSubscription.id
    )
    if broker_id is not None:
        query = query.where(GraphSubscription.broker_id == broker_id)
    if connection_id is not None:
        query = query.where(GraphSubscription.connection_id == connection_id)
    return [_record(row) for row in connection.execute(query).all()]


def client_state_of(connection: Connection, subscription_id: str) -> str:
    """The encrypted client state of a subscription, for the Graph calls."""
    value = connection.scalar(
        select(GraphSubscription.client_state_encrypted).where(
            GraphSubscription.id == subscription_id
        )
    )
    if value is None:
        raise NotFound(f"no Microsoft Graph subscription with id {subscription_id}")
    return value


def activate(
    connection: Connection,
    subscription_id: str,
    *,
    graph_subscription_id: str,
    client_state_encrypted: str,
    expires_at: datetime,
    delta_link: str | None,
) -> None:
    """Graph made (or remade) the subscription: keep its id, secret and expiry."""
    now = utcnow()
    _update(
        connection,
        subscription_id,
        graph_subscription_id=graph_subscription_id,
        client_state_encrypted=client_state_encrypted,
        expires_at=expires_at,
        delta_link=delta_link,
        status=SUBSCRIPTION_ACTIVE,
        last_error=None,
        renewed_at=now,
    )


def renewed(connection: Connection, subscription_id: str, expires_at: datetime) -> None:
    _update(
        connection,
        subscription_id,
        expires_at=expires_at,
        status=SUBSCRIPTION_ACTIVE,
        last_error=None,
        renewed_at=utcnow(),
    )


def mark_failing(connection: Connection, subscription_id: str, reason: str) -> None:
    _update(connection, subscription_id, status=SUBSCRIPTION_FAILING, last_error=reason)


def set_delta_link(
    connection: Connection, subscription_id: str, delta_link: str | None
) -> None:
    _update(connection, subscription_id, delta_link=delta_link)


def record_lifecycle(connection: Connection, subscription_id: str, event: str) -> None:
    _update(connection, subscription_id, last_lifecycle_event=event)


def remove_subscription(connection: Connection, subscription_id: str) -> None:
    connection.execute(
        delete(GraphSubscription).where(GraphSubscription.id == subscription_id)
    )


def _update(connection: Connection, subscription_id: str, **values: object) -> None:
    result = connection.execute(
        update(GraphSubscription)
        .where(GraphSubscription.id == subscription_id)
        .values(**values, updated_at=utcnow())
    )
    if result.rowcount == 0:
        raise NotFound(f"no Microsoft Graph subscription with id {subscription_id}")


# Ingest.


def notification_targets(
    connection: Connection, graph_subscription_ids: Iterable[str]
) -> dict[str, NotificationTarget]:
    """The subscriptions with these Graph ids, by Graph id."""
    wanted = sorted(set(graph_subscription_ids))
    if not wanted:
        return {}
    rows = connection.execute(
        select(*_TARGET_COLUMNS).where(
            GraphSubscription.graph_subscription_id.in_(wanted)
        )
    ).all()
    return {
        row.graph_subscription_id: NotificationTarget(**row._mapping) for row in rows
    }


def subscriptions_being_created(connection: Connection) -> list[NotificationTarget]:
    """Subscriptions Graph may already notify about before we know their id."""
    rows = connection.execute(
        select(*_TARGET_COLUMNS).where(
            GraphSubscription.status == SUBSCRIPTION_CREATING
        )
    ).all()
    return [NotificationTarget(**row._mapping) for row in rows]


_TARGET_COLUMNS = (
    GraphSubscription.id,
    GraphSubscription.broker_id,
    GraphSubscription.kind,
    GraphSubscription.status,
    GraphSubscription.graph_subscription_id,
    GraphSubscription.client_state_encrypted,
)


def notified(
    connection: Connection, subscription_ids: Iterable[str], at: datetime
) -> None:
    ids = sorted(set(subscription_ids))
    if ids:
        connection.execute(
            update(GraphSubscription)
            .where(GraphSubscription.id.in_(ids))
            .values(last_notification_at=at)
        )


def seen_notification(connection: Connection, key: str, *, since: datetime) -> bool:
    """Whether ``key`` was stored at or after ``since``; counts the repeat."""
    first_seen = connection.scalar(
        select(GraphNotificationKey.first_seen_at).where(
            GraphNotificationKey.key == key
        )
    )
    if first_seen is None or first_seen < since:
        return False
    connection.execute(
        update(GraphNotificationKey)
        .where(GraphNotificationKey.key == key)
        .values(repeats=GraphNotificationKey.repeats + 1, last_seen_at=utcnow())
    )
    return True


def remember_notification(
    connection: Connection, key: str, *, subscription_id: str, event_id: str | None
) -> None:
    """Keep ``key`` (replacing an expired copy) so that a repeat is recognised."""
    now = utcnow()
    connection.execute(
        delete(GraphNotificationKey).where(GraphNotificationKey.key == key)
    )
    connection.execute(
        insert(GraphNotificationKey).values(
            key=key,
            subscription_id=subscription_id,
            event_id=event_id,
            first_seen_at=now,
            last_seen_at=now,
            repeats=0,
        )
    )


def prune_notification_keys(connection: Connection, *, before: datetime) -> int:
    result = connection.execute(
        delete(GraphNotificationKey).where(GraphNotificationKey.first_seen_at < before)
    )
    return result.rowcount


# Events.


@dataclass(frozen=True, slots=True)
class GraphEvent:
    """An event about to be stored from a notification or a delta query."""

    broker_id: str
    subscription_id: str
    type: str
    entity_id: str
    notification: dict[str, Any]
    supported: bool = True
    id: str = field(default_factory=uuid7)


def add_events(
    connection: Connection,
    events: Sequence[GraphEvent],
    *,
    delivery_id: str,
    received_at: datetime,
) -> list[str]:
    """Store events with their ``process_event`` jobs; return their ids.

    The rows are the ones SalesTrekker ingest writes (see
    ``store.events.accepted_event_write``); the payload is
    ``{"subscription": <subscription id>, "notification": <as sent, without
    its client state>}``. An unsupported event gets no job.
    """
    ids = []
    for event in events:
        event_id = event.id
        ids.append(event_id)
        notification = {
            key: value
            for key, value in event.notification.items()
            if key != "clientState"
        }
        connection.execute(
            EVENTS.insert(),
            [
                {
                    "id": event_id,
                    "broker_id": event.broker_id,
                    "source": SOURCE,
                    "type": event.type,
                    "entity_id": event.entity_id,
                    "deal_id": None,
                    "status": RECEIVED if event.supported else UNSUPPORTED,
                    "payload": json.dumps(
                        {
                            "subscription": event.subscription_id,
                            "notification": notification,
                        },
                        sort_keys=True,
                    ),
                    "received_at": received_at,
                    "delivery_id": delivery_id,
                }
            ],
        )
        if event.supported:
            connection.execute(
                JOBS.insert(),
                [
                    job_row(
                        kind=PROCESS_EVENT,
                        broker_id=event.broker_id,
                        event_id=event_id,
                        ordering_key=ordering_key(
                            event.broker_id, event.entity_id, None
                        ),
                    )
                ],
            )
    return ids


def add_delivery(connection: Connection, delivery: dict[str, Any]) -> None:
    connection.execute(DELIVERIES.insert(), [delivery])


def event_source(connection: Connection, event_id: str) -> str:
    source = connection.scalar(select(Event.source).where(Event.id == event_id))
    if source is None:
        raise NotFound(f"no event with id {event_id}")
    return source


def refine_event(
    connection: Connection, event_id: str, *, type: str, deal_id: str | None
) -> None:
    """Keep what processing learnt: a task's completion, a mail's deal."""
    connection.execute(
        update(Event).where(Event.id == event_id).values(type=type, deal_id=deal_id)
    )


# Jobs.


def subscription_ordering_key(broker_id: str, subscription_id: str) -> str:
    return f"{broker_id}:subscription:{subscription_id}"


def schedule_job(
    connection: Connection,
    *,
    broker_id: str,
    subscription_id: str,
    action: str,
    run_after: datetime | None = None,
    unless_queued: bool = False,
) -> bool:
    """Queue ``action`` for a subscription; False if ``unless_queued`` and one
    is already waiting."""
    if action not in ACTIONS:
        raise ValueError(f"unknown subscription action {action!r}")
    ref = f"{action}:{subscription_id}"
    if unless_queued and connection.scalar(
        select(Job.id).where(
            Job.kind == SUBSCRIPTION_JOB, Job.ref == ref, Job.status == QUEUED
        )
    ):
        return False
    connection.execute(
        JOBS.insert(),
        [
            job_row(
                kind=SUBSCRIPTION_JOB,
                broker_id=broker_id,
                event_id=None,
                ordering_key=None
                if action == RENEW
                else subscription_ordering_key(broker_id, subscription_id),
                run_after=run_after,
                ref=ref,
            )
        ],
    )
    return True


def parse_job_ref(ref: str) -> tuple[str, str]:
    """(action, subscription id) of a job's ``ref``."""
    action, _, subscription_id = ref.partition(":")
    if action not in ACTIONS or not subscription_id:
        raise ValueError(f"not a subscription job ref: {ref!r}")
    return action, subscription_id


def queued_jobs(connection: Connection, subscription_id: str) -> list[dict[str, Any]]:
    """The subscription's waiting jobs: action and when, soonest first."""
    rows = connection.execute(
        select(Job.ref, Job.run_after, Job.status)
        .where(Job.kind == SUBSCRIPTION_JOB, Job.ref.like(f"%:{subscription_id}"))
        .order_by(Job.run_after)
    ).all()
    return [
        {
            "action": parse_job_ref(row.ref)[0],
            "run_after": row.run_after,
            "status": row.status,
        }
        for row in rows
    ]
