"""``/events``: the broker's events, one event's details, replay."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Path, Query
from sqlalchemy import Connection

from brokerhooks.api.auth import Caller, CurrentBroker, RuntimeDep
from brokerhooks.api.errors import ApiError, documented, not_found
from brokerhooks.api.params import NO_NUL, Limit, UtcDatetime
from brokerhooks.api.schemas import EventDetail, EventPage, EventSummary
from brokerhooks.ingest.salestrekker_events import canonical_event_name
from brokerhooks.store import processing
from brokerhooks.store.browse import EventFilter, event_broker, page_events
from brokerhooks.store.database import transaction
from brokerhooks.store.events import event_details, get_event
from brokerhooks.store.models import UNSUPPORTED

router = APIRouter(prefix="/events", tags=["events"])

EventStatus = Literal[
    "received",
    "processing",
    "done",
    "coalesced",
    "dead",
    "needs_attention",
    "unsupported",
]
EventIdPath = Annotated[UUID, Path(description="The event's id.")]


def _owned_event(connection: Connection, caller: Caller, event_id: UUID) -> str:
    """The event's id as stored, if it is the caller's; 404 otherwise."""
    stored_id = str(event_id)
    if event_broker(connection, stored_id) != caller.broker_id:
        raise not_found(f"event {stored_id}")
    return stored_id


@router.get("", response_model=EventPage, summary="List events, newest first")
def list_events(
    caller: CurrentBroker,
    runtime: RuntimeDep,
    type: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=NO_NUL,
            description="An event type, e.g. `dealChangesStage` (any case).",
        ),
    ] = None,
    status: Annotated[EventStatus | None, Query()] = None,
    deal_id: Annotated[UUID | None, Query(description="The deal's id.")] = None,
    since: Annotated[
        UtcDatetime | None, Query(description="Received at or after (ISO 8601).")
    ] = None,
    until: Annotated[
        UtcDatetime | None, Query(description="Received before (ISO 8601).")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_NUL,
            description="Text to find in the webhook's body.",
        ),
    ] = None,
    before: Annotated[
        UUID | None, Query(description="The `next` of the previous page.")
    ] = None,
    limit: Limit = 50,
) -> EventPage:
    where = EventFilter(
        broker_id=caller.broker_id,
        type=(canonical_event_name(type) or type.strip()) if type else None,
        status=status,
        deal_id=str(deal_id) if deal_id else None,
        since=since,
        until=until,
        text=q,
    )
    with transaction(runtime.engine) as connection:
        records, cursor = page_events(
            connection, where, before=str(before) if before else None, limit=limit
        )
    items = [EventSummary.model_validate(record.as_dict()) for record in records]
    return EventPage(items=items, next=cursor)


@router.get(
    "/{event_id}",
    response_model=EventDetail,
    responses=documented(404),
    summary="An event with its delivery, attempts, snapshots, changes and runs",
)
def get_event_details(
    event_id: EventIdPath, caller: CurrentBroker, runtime: RuntimeDep
) -> EventDetail:
    with transaction(runtime.engine) as connection:
        stored_id = _owned_event(connection, caller, event_id)
        details = event_details(connection, stored_id)
    return EventDetail.model_validate(details)


@router.post(
    "/{event_id}/replay",
    response_model=EventSummary,
    status_code=202,
    responses=documented(404, 409),
    summary="Queue an event to be processed again",
    description=(
        "The event is processed from the start: fetched again, compared, and "
        "the rules run. Steps already done are not repeated (the ledger keeps "
        "them). 409 when the event is already waiting or being processed, or "
        "is unsupported."
    ),
)
def replay_event(
    event_id: EventIdPath, caller: CurrentBroker, runtime: RuntimeDep
) -> EventSummary:
    with transaction(runtime.engine, write=True) as connection:
        stored_id = _owned_event(connection, caller, event_id)
        if not processing.replay(connection, stored_id):
            status = get_event(connection, stored_id).status
            raise ApiError(409, "conflict", _why_not_replayed(status))
        record = get_event(connection, stored_id)
    return EventSummary.model_validate(record.as_dict())


def _why_not_replayed(status: str) -> str:
    if status == UNSUPPORTED:
        return "the event is unsupported: there is nothing to process"
    return f"the event is already queued or being processed (status {status})"
