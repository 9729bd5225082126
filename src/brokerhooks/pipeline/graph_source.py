"""Processing Microsoft Graph events: what enrichment adds to the pipeline.

For an event from a Graph subscription the worker

1. finds the subscription (by the id in the event's payload) and through it
   the broker's Microsoft 365 connection;
2. fetches the item (``enrich.fetch_graph``), or, for a ``...Deleted``
   event, takes its last known snapshot;
3. refines the type: a ``taskUpdated`` whose task became completed is a
   ``taskCompleted`` (kept on the event);
4. finds the deal and contact it is about: a mail by its sender's address,
   a calendar event by the brokerhooks action that made it (the ledger
   keeps the event's id and names the deal), else by its attendees'
   (``store.contact_index``), a To Do task by the brokerhooks action that
   made it (its linked resource's externalId is the action's key, whose
   ledger entry names the deal). The
   deal becomes the event's ``deal_id``, so that actions such as
   ``salestrekker_note`` write on it.

Only the Graph item is stored as the event's snapshot; the deal and contact
are read from their latest snapshots for the rules and not stored again,
so that a Graph event never puts an older copy of a deal in front of the
deal's own events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
from sqlalchemy import Connection, Engine

from brokerhooks.actions.todo_task import APPLICATION_NAME
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.connectors.msgraph.auth import graph_client
from brokerhooks.ingest.msgraph_events import (
    DELETED_TYPES,
    GRAPH_SUBJECTS,
    SOURCE,
    TASK_COMPLETED,
    TASK_UPDATED,
    graph_subject_of,
)
from brokerhooks.pipeline.enrich import Fetched, fetch_graph, gone
from brokerhooks.security.secrets import Vault
from brokerhooks.store import contact_index, processing, runs
from brokerhooks.store import subscriptions as store
from brokerhooks.store.contact_index import ContactMatch
from brokerhooks.store.database import transaction
from brokerhooks.store.processing import EventToProcess, StoredSnapshot
from brokerhooks.store.subscriptions import SubscriptionRecord

T = TypeVar("T")


@dataclass(slots=True)
class GraphFetched(Fetched):
    """A Graph item, and the deal and contact it was matched to (not stored)."""

    deal: dict[str, Any] | None = None
    contact: dict[str, Any] | None = None
    deal_id: str | None = None


class GraphSource:
    """Fetches and matches Graph events for ``EventProcessor``."""

    def __init__(
        self,
        engine: Engine,
        vault: Vault,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._engine = engine
        self._vault = vault
        self._transport = transport

    async def fetch(self, event: EventToProcess) -> tuple[GraphFetched, EventToProcess]:
        """The event's snapshots, and the event with its refined type and deal.

        PermanentError when its subscription (hence its connection) is gone;
        connector errors pass through.
        """
        subject = graph_subject_of(event.type)
        if subject is None:
            raise PermanentError(f"{event.type!r} is not a Microsoft Graph event type")
        subscription, previous = await self._read(
            lambda c: self._subscription_and_previous(c, event, subject)
        )
        if event.type in DELETED_TYPES:
            data = gone(subject, event.entity_id, previous.data if previous else None)
        else:
            async with graph_client(
                self._engine,
                self._vault,
                subscription.connection_id,
                transport=self._transport,
            ) as client:
                data = await fetch_graph(
                    client, subject, event.entity_id, list_id=_list_id(subscription)
                )

        event_type = _refined_type(event.type, data, previous)
        fetched = GraphFetched(subject, event.entity_id, data)
        await self._read(lambda c: self._match(c, event, fetched))
        return fetched, replace(
            event, type=event_type, deal_id=_deal_id(event, fetched)
        )

    def _subscription_and_previous(
        self, connection: Connection, event: EventToProcess, subject: str
    ) -> tuple[SubscriptionRecord, StoredSnapshot | None]:
        payload = json.loads(event.payload)
        subscription_id = (
            payload.get("subscription") if isinstance(payload, dict) else None
        )
        found = (
            store.find_subscription(connection, str(subscription_id))
            if subscription_id
            else None
        )
        if found is None or found.broker_id != event.broker_id:
            raise PermanentError(
                f"the Microsoft Graph subscription of event {event.id} was removed "
                "(with its connection, or by `brokerhooks connections m365 "
                "unsubscribe`), so its item cannot be fetched; nothing to do"
            )
        previous = processing.latest_snapshot(
            connection,
            broker_id=event.broker_id,
            subject=subject,
            entity_id=event.entity_id,
        )
        return found, previous

    def _match(
        self, connection: Connection, event: EventToProcess, fetched: GraphFetched
    ) -> None:
        match_deal_and_contact(connection, event, fetched)

    async def _read(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with transaction(self._engine) as connection:
                return work(connection)

        return await asyncio.to_thread(run)


def match_deal_and_contact(
    connection: Connection,
    event: EventToProcess,
    fetched: GraphFetched,
    *,
    before: int | None = None,
) -> None:
    """Find the deal and contact of a Graph item, from their snapshots.

    The latest snapshots, or with ``before`` (a snapshot id) those taken
    before it: what a back-test sees of the time the event was processed.
    """
    match = _known(event) or _match_item(connection, event.broker_id, fetched)
    if match is None:
        return
    deal = (
        _latest(connection, event.broker_id, "deal", match.deal_id, before)
        if match.deal_id
        else None
    )
    contact_id = match.contact_id or _first_client(deal)
    fetched.deal = deal
    fetched.contact = (
        _latest(connection, event.broker_id, "contact", contact_id, before)
        if contact_id
        else None
    )
    fetched.deal_id = match.deal_id


def graph_context(context: Mapping[str, Any], fetched: GraphFetched) -> dict[str, Any]:
    """The rules' variables for a Graph event, from ``decide.rule_context``'s."""
    found = dict(context)
    found["event"] = {**context["event"], "source": SOURCE}
    for subject in GRAPH_SUBJECTS:
        found.setdefault(subject, None)
    found.update(deal=fetched.deal, contact=fetched.contact, note=None)
    return found


def _refined_type(
    event_type: str, data: Mapping[str, Any], previous: StoredSnapshot | None
) -> str:
    """``taskUpdated`` becomes ``taskCompleted`` when the task was just done."""
    if event_type != TASK_UPDATED or data.get("status") != "completed":
        return event_type
    if previous is not None and previous.data.get("status") == "completed":
        return event_type
    return TASK_COMPLETED


def _list_id(subscription: SubscriptionRecord) -> str | None:
    """The To Do list of a ``.../todo/lists/{id}/tasks`` subscription."""
    parts = subscription.resource.split("/")
    if subscription.kind != "todo" or len(parts) < 3:
        return None
    return parts[-2]


@dataclass(frozen=True, slots=True)
class _Match:
    contact_id: str | None
    deal_id: str | None


def _known(event: EventToProcess) -> _Match | None:
    """A replayed event keeps the deal it was matched to."""
    return _Match(None, event.deal_id) if event.deal_id else None


def _match_item(
    connection: Connection, broker_id: str, fetched: GraphFetched
) -> _Match | None:
    data = fetched.data
    if fetched.subject == "message":
        sender = (data.get("from") or {}).get("address")
        return _by_address(connection, broker_id, [sender])
    if fetched.subject == "calendar_event":
        made = _by_maker(connection, broker_id, fetched.entity_id)
        if made is not None:
            return made
        addresses = [
            attendee.get("address") for attendee in data.get("attendees") or []
        ]
        addresses.append((data.get("organizer") or {}).get("address"))
        return _by_address(connection, broker_id, addresses)
    if fetched.subject == "task":
        return _by_action(connection, broker_id, data)
    return None


def _by_address(
    connection: Connection, broker_id: str, addresses: list[Any]
) -> _Match | None:
    for address in addresses:
        found: ContactMatch | None = contact_index.match_email(
            connection, broker_id, address
        )
        if found is not None:
            return _Match(found.contact_id, found.deal_id)
    return None


def _by_action(
    connection: Connection, broker_id: str, task: Mapping[str, Any]
) -> _Match | None:
    """The deal of the brokerhooks action that made the task, if one did."""
    for link in task.get("linkedResources") or []:
        if link.get("applicationName") != APPLICATION_NAME:
            continue
        entry = runs.find_action(connection, str(link.get("externalId") or ""))
        if entry is not None and entry.broker_id == broker_id and entry.deal_id:
            return _Match(None, entry.deal_id)
    return None


def _by_maker(connection: Connection, broker_id: str, event_id: str) -> _Match | None:
    """The deal of the brokerhooks action that made the calendar event."""
    entry = runs.find_made(connection, broker_id, event_id, ("calendar_event",))
    if entry is not None and entry.deal_id:
        return _Match(None, entry.deal_id)
    return None


def _latest(
    connection: Connection,
    broker_id: str,
    subject: str,
    entity_id: str,
    before: int | None = None,
) -> dict[str, Any] | None:
    found = processing.latest_snapshot(
        connection,
        broker_id=broker_id,
        subject=subject,
        entity_id=entity_id,
        before=before,
    )
    return found.data if found is not None else None


def _first_client(deal: Mapping[str, Any] | None) -> str | None:
    clients = (deal or {}).get("idClients") or []
    return str(clients[0]) if clients else None


def _deal_id(event: EventToProcess, fetched: GraphFetched) -> str | None:
    return fetched.deal_id or event.deal_id
