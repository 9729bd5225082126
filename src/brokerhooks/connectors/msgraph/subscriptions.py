"""Microsoft Graph change-notification subscriptions: create, renew, delete,
recreate, resynchronise.

``SubscriptionService`` is what the command line, the console and the
worker call. A subscription is kept as a row (``store.subscriptions``) with
an encrypted random client state that Graph echoes in every notification.

Creating one: the row is stored first (``creating``), so that a
notification Graph sends at once is recognised; then Graph is asked, and
calls our notification URL to validate it before answering; then a first
delta query gives the link where a resynchronisation starts; then the row
is ``active`` and its renewal is queued.

Renewal: every subscription has one ``renew`` job, due when half of its
lifetime is left (about 35 hours into Outlook's and To Do's 70.5, 15 days
into OneDrive's 29.4), so that a day of outage is survived. A renewal
that Graph answers 404 (the subscription expired or was removed) recreates
the subscription and resynchronises. A renewal that keeps failing marks the
subscription ``failing`` and is tried again every ``FAILING_RETRY``; a
person fixes the cause (usually `connections m365 connect`).

Resynchronising runs the delta query from the stored link and stores an
event for each item that changed; an expired link starts a new baseline
(changes in between are lost, and ``last_error`` says so).

Errors are the connector's (``TransientError``, ``PermanentError`` and
``msgraph.errors``) plus ``ConfigurationError`` for a public URL Graph
cannot use.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import Connection, Engine, select

from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.connectors.msgraph.auth import graph_client
from brokerhooks.connectors.msgraph.client import GraphClient, graph_datetime
from brokerhooks.connectors.msgraph.errors import GraphNotFound, GraphRequestError
from brokerhooks.errors import ConfigurationError
from brokerhooks.ingest.msgraph_events import (
    RESOURCE_KINDS,
    SOURCE,
    ResourceKind,
    event_type_for,
)
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import subscriptions as store
from brokerhooks.store.connections import get_m365_connection_by_id
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Event
from brokerhooks.store.subscriptions import GraphEvent, SubscriptionRecord
from brokerhooks.store.types import utcnow, uuid7

log = structlog.get_logger("brokerhooks.connectors.msgraph.subscriptions")

T = TypeVar("T")

NOTIFICATION_PATH = "/hooks/msgraph"
LIFECYCLE_PATH = "/hooks/msgraph/lifecycle"
# Asked for a little less than the maximum, so that a clock a few minutes
# ahead of Graph's is not refused.
EXPIRY_MARGIN = timedelta(minutes=10)
FAILING_RETRY = timedelta(minutes=30)
# Graph retries a notification for up to four hours [doc]; a repeat within
# this window is recognised. Notifications without a version (no etag, no
# id) are only recognised within the short window, so that a real second
# change is not mistaken for a repeat.
DEDUPE_WINDOW = timedelta(hours=5)
SHORT_DEDUPE_WINDOW = timedelta(minutes=10)
# GUESS: Graph's event delta needs a window (calendarView); a month back and
# a year ahead covers what brokers book.
CALENDAR_DELTA_BACK = timedelta(days=30)
CALENDAR_DELTA_AHEAD = timedelta(days=365)
CLIENT_STATE_BYTES = 48  # 64 characters; Graph keeps at most 128 [doc]


def renew_at(kind: ResourceKind, expires_at: datetime) -> datetime:
    """When a subscription expiring at ``expires_at`` is renewed: halfway."""
    return expires_at - kind.max_lifetime / 2


def resource_kind(name: str) -> ResourceKind:
    try:
        return RESOURCE_KINDS[name]
    except KeyError:
        raise ValueError(
            f"no resource kind {name!r}; use one of {', '.join(RESOURCE_KINDS)}"
        ) from None


def new_client_state() -> Secret:
    return Secret(secrets.token_urlsafe(CLIENT_STATE_BYTES))


@dataclass(frozen=True, slots=True)
class ResyncResult:
    events: int
    delta_link_expired: bool = False


class SubscriptionService:
    """Subscriptions of Microsoft 365 connections, at Graph and in the store."""

    def __init__(
        self,
        engine: Engine,
        vault: Vault,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._engine = engine
        self._vault = vault
        self._settings = settings
        self._transport = transport
        self._clock = clock

    # URLs.

    @property
    def notification_url(self) -> str:
        return self._public_url() + NOTIFICATION_PATH

    @property
    def lifecycle_url(self) -> str:
        return self._public_url() + LIFECYCLE_PATH

    def _public_url(self) -> str:
        url = self._settings.public_url.rstrip("/")
        parts = urlsplit(url)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ConfigurationError(
                f"BROKERHOOKS_PUBLIC_URL is {url!r}: Microsoft Graph delivers "
                "notifications only to https URLs it can reach; set it to the "
                "service's public https address"
            )
        return url

    # Creating and removing.

    async def subscribe(
        self,
        connection_id: str,
        kind_name: str,
        *,
        list_name: str | None = None,
        change_types: tuple[str, ...] | None = None,
    ) -> SubscriptionRecord:
        """Subscribe a connection to a resource kind; the active subscription.

        ``list_name`` names the To Do list (created if missing) for ``todo``;
        ``change_types`` defaults to the kind's.
        """
        kind = resource_kind(kind_name)
        changes = change_types or kind.change_types
        refused = sorted(set(changes) - set(kind.allowed_change_types))
        if refused:
            raise ValueError(
                f"{kind.name} subscriptions take {', '.join(kind.allowed_change_types)}"
                f", not {', '.join(refused)}"
            )
        if kind.name != "todo" and list_name is not None:
            raise ValueError("--list is only for todo subscriptions")
        notification_url, lifecycle_url = self.notification_url, self.lifecycle_url

        async with self._client(connection_id) as client:
            resource = await self._resource(client, kind, list_name or "Tasks")
            client_state = new_client_state()
            record = await self._store(
                lambda c: store.add_subscription(
                    c,
                    broker_id=self._broker_of(c, connection_id),
                    connection_id=connection_id,
                    kind=kind.name,
                    resource=resource,
                    list_name=(list_name or "Tasks") if kind.name == "todo" else None,
                    change_types=changes,
                    client_state_encrypted=self._vault.encrypt(client_state),
                )
            )
            try:
                created = await self._create_at_graph(
                    client,
                    resource=resource,
                    kind=kind,
                    change_types=changes,
                    client_state=client_state,
                    notification_url=notification_url,
                    lifecycle_url=lifecycle_url,
                )
            except BaseException:
                await self._store(lambda c: store.remove_subscription(c, record.id))
                raise
            delta_link = await self._baseline(client, record)

        expires = _expiry(created, self._requested_expiry(kind))
        await self._store(
            lambda c: self._activate(
                c, record, created, client_state, expires, delta_link
            )
        )
        log.info(
            "subscription_created",
            subscription=record.id,
            broker=record.broker_name,
            connection=record.connection_name,
            kind=kind.name,
            expires_at=expires.isoformat(),
        )
        return await self._store(lambda c: store.get_subscription(c, record.id))

    def _activate(
        self,
        connection: Connection,
        record: SubscriptionRecord,
        created: dict[str, Any],
        client_state: Secret,
        expires: datetime,
        delta_link: str | None,
    ) -> None:
        store.activate(
            connection,
            record.id,
            graph_subscription_id=str(created["id"]),
            client_state_encrypted=self._vault.encrypt(client_state),
            expires_at=expires,
            delta_link=delta_link,
        )
        store.schedule_job(
            connection,
            broker_id=record.broker_id,
            subscription_id=record.id,
            action=store.RENEW,
            run_after=renew_at(resource_kind(record.kind), expires),
        )

    async def unsubscribe(self, subscription_id: str) -> SubscriptionRecord:
        """Delete a subscription at Graph (if it is still there) and here."""
        record = await self._store(lambda c: store.get_subscription(c, subscription_id))
        if record.graph_subscription_id is not None:
            async with self._client(record.connection_id) as client:
                # Gone already if it expired or Graph removed it.
                with contextlib.suppress(GraphNotFound):
                    await client.delete_subscription(record.graph_subscription_id)
        await self._store(lambda c: store.remove_subscription(c, subscription_id))
        log.info(
            "subscription_deleted",
            subscription=record.id,
            broker=record.broker_name,
            connection=record.connection_name,
            kind=record.kind,
        )
        return record

    async def unsubscribe_connection(self, connection_id: str) -> list[str]:
        """Delete every subscription of a connection (before it is removed).

        Best effort at Graph: what cannot be deleted there expires by
        itself within three days (30 for OneDrive), and its notifications
        are ignored once the rows are gone. Returns the problems met.
        """
        records = await self._store(
            lambda c: store.list_subscriptions(c, connection_id=connection_id)
        )
        problems = []
        for record in records:
            try:
                await self.unsubscribe(record.id)
            except (PermanentError, TransientError) as error:
                problems.append(f"{record.kind}: {error}")
                await self._forget(record.id)
        return problems

    async def _forget(self, subscription_id: str) -> None:
        await self._store(lambda c: store.remove_subscription(c, subscription_id))

    # Renewing and recreating.

    async def renew(
        self, subscription_id: str, *, recreate_if_gone: bool = True
    ) -> SubscriptionRecord:
        """Extend a subscription to its maximum lifetime (this reauthorizes it).

        A subscription Graph no longer has is recreated and resynchronised,
        or, without ``recreate_if_gone``, GraphNotFound is raised.
        """
        record = await self._store(lambda c: store.get_subscription(c, subscription_id))
        kind = resource_kind(record.kind)
        if record.graph_subscription_id is None:
            raise PermanentError(
                f"subscription {record.id} was never created at Graph; "
                "remove it with `brokerhooks connections m365 unsubscribe` and "
                "subscribe again"
            )
        async with self._client(record.connection_id) as client:
            try:
                answer = await client.renew_subscription(
                    record.graph_subscription_id, self._requested_expiry(kind)
                )
            except GraphNotFound:
                log.warning(
                    "subscription_gone", subscription=record.id, kind=record.kind
                )
                if not recreate_if_gone:
                    raise
                return await self.recreate(subscription_id)
        expires = _expiry(answer, self._requested_expiry(kind))
        await self._store(lambda c: store.renewed(c, record.id, expires))
        log.info(
            "subscription_renewed",
            subscription=record.id,
            broker=record.broker_name,
            kind=record.kind,
            expires_at=expires.isoformat(),
        )
        return await self._store(lambda c: store.get_subscription(c, record.id))

    async def recreate(
        self, subscription_id: str, *, resync: bool = True
    ) -> SubscriptionRecord:
        """A new Graph subscription (and client state) for the same row.

        Then, with ``resync``, a delta query from the stored link stores
        events for what changed while no subscription was there.
        """
        record = await self._store(lambda c: store.get_subscription(c, subscription_id))
        kind = resource_kind(record.kind)
        client_state = new_client_state()
        async with self._client(record.connection_id) as client:
            if record.graph_subscription_id is not None:
                # Probably gone already, which is why we are here.
                with contextlib.suppress(GraphRequestError):
                    await client.delete_subscription(record.graph_subscription_id)
            created = await self._create_at_graph(
                client,
                resource=record.resource,
                kind=kind,
                change_types=tuple(record.change_types.split(",")),
                client_state=client_state,
                notification_url=self.notification_url,
                lifecycle_url=self.lifecycle_url,
            )
        expires = _expiry(created, self._requested_expiry(kind))
        await self._store(
            lambda c: store.activate(
                c,
                record.id,
                graph_subscription_id=str(created["id"]),
                client_state_encrypted=self._vault.encrypt(client_state),
                expires_at=expires,
                delta_link=record.delta_link,
            )
        )
        log.info(
            "subscription_recreated",
            subscription=record.id,
            broker=record.broker_name,
            kind=record.kind,
            expires_at=expires.isoformat(),
        )
        if resync:
            await self.resync(record.id, reason="the subscription was recreated")
        return await self._store(lambda c: store.get_subscription(c, record.id))

    # Resynchronising.

    async def resync(
        self,
        subscription_id: str,
        *,
        reason: str,
        delivery_id: str | None = None,
    ) -> ResyncResult:
        """Store an event for each item changed since the stored delta link.

        ``delivery_id`` is the delivery that asked for it (a ``missed``
        lifecycle notification, a OneDrive notification); without one, a
        delivery record says why the events came.
        """
        record = await self._store(lambda c: store.get_subscription(c, subscription_id))
        kind = resource_kind(record.kind)
        expired = False
        async with self._client(record.connection_id) as client:
            start = record.delta_link or self._delta_path(record)
            try:
                items, delta_link = await client.delta(start)
            except GraphRequestError as error:
                if error.status_code != 410 or record.delta_link is None:
                    raise
                # The link expired: a new baseline, and a note of the gap.
                expired = True
                items = []
                delta_link = await self._baseline(client, record)
            if record.delta_link is None and not expired:
                items = []  # the first query is the baseline, not changes

        received_at = self._clock()
        events = await self._store(
            lambda c: self._resync_events(c, record, kind, items)
        )

        def write(connection: Connection) -> int:
            delivery = delivery_id
            if events and delivery is None:
                delivery = uuid7()
                store.add_delivery(
                    connection,
                    _resync_delivery(delivery, record, received_at, reason, events),
                )
            if events:
                assert delivery is not None
                store.add_events(
                    connection, events, delivery_id=delivery, received_at=received_at
                )
            store.set_delta_link(connection, record.id, delta_link)
            if expired:
                store.mark_failing(
                    connection,
                    record.id,
                    f"the delta link had expired at {received_at:%Y-%m-%d %H:%M} "
                    "UTC; changes before then were not resynchronised",
                )
            return len(events)

        count = await self._store(write)
        log.info(
            "subscription_resynced",
            subscription=record.id,
            broker=record.broker_name,
            kind=record.kind,
            events=count,
            reason=reason,
            delta_link_expired=expired,
        )
        return ResyncResult(count, expired)

    def _resync_events(
        self,
        connection: Connection,
        record: SubscriptionRecord,
        kind: ResourceKind,
        items: list[dict[str, Any]],
    ) -> list[GraphEvent]:
        """What a delta query's items mean, in the subscription's change types."""
        ids = [str(item["id"]) for item in items if isinstance(item.get("id"), str)]
        seen = (
            set(
                connection.scalars(
                    select(Event.entity_id).where(
                        Event.broker_id == record.broker_id,
                        Event.source == SOURCE,
                        Event.entity_id.in_(ids),
                    )
                )
            )
            if ids
            else set()
        )
        watched = set(record.change_types.split(","))
        events = []
        for item in items:
            item_id = item.get("id")
            if not isinstance(item_id, str) or "root" in item:
                continue
            removed = "@removed" in item or "deleted" in item
            if kind.name == "drive":
                change = "deleted" if removed else "updated"
            elif removed:
                change = "deleted"
            else:
                change = "updated" if item_id in seen else "created"
            if change not in watched or (change == "deleted" and item_id not in seen):
                continue
            events.append(
                GraphEvent(
                    broker_id=record.broker_id,
                    subscription_id=record.id,
                    type=event_type_for(kind, change),
                    entity_id=item_id[:255],
                    notification={
                        "subscriptionId": record.graph_subscription_id,
                        "changeType": change,
                        "resource": f"{record.resource}/{item_id}",
                        "resourceData": {"id": item_id},
                        "delta": True,
                    },
                )
            )
        return events

    async def _baseline(
        self, client: GraphClient, record: SubscriptionRecord
    ) -> str | None:
        """The delta link of the present state, from which changes are read."""
        path = self._delta_path(record)
        if record.kind == "drive":
            # OneDrive gives the present link without listing every file.
            path += ("&" if "?" in path else "?") + "token=latest"
        try:
            _items, delta_link = await client.delta(path)
        except GraphRequestError as error:
            log.warning(
                "subscription_baseline_failed",
                subscription=record.id,
                kind=record.kind,
                error=str(error),
            )
            return None
        return delta_link

    def _delta_path(self, record: SubscriptionRecord) -> str:
        resource = "/" + record.resource.lstrip("/")
        if record.kind == "calendar":
            now = self._clock()
            user = resource.removesuffix("/events")
            return (
                f"{user}/calendarView/delta?startDateTime="
                f"{graph_datetime(now - CALENDAR_DELTA_BACK)}&endDateTime="
                f"{graph_datetime(now + CALENDAR_DELTA_AHEAD)}"
            )
        if record.kind == "inbox":
            return f"{resource}/delta?$select=id"
        return f"{resource}/delta"

    # Graph.

    async def _create_at_graph(
        self,
        client: GraphClient,
        *,
        resource: str,
        kind: ResourceKind,
        change_types: tuple[str, ...],
        client_state: Secret,
        notification_url: str,
        lifecycle_url: str,
    ) -> dict[str, Any]:
        return await client.create_subscription(
            {
                "changeType": ",".join(change_types),
                "notificationUrl": notification_url,
                "lifecycleNotificationUrl": lifecycle_url,
                "resource": resource,
                "expirationDateTime": graph_datetime(self._requested_expiry(kind)),
                "clientState": client_state.reveal(),
            }
        )

    async def _resource(
        self, client: GraphClient, kind: ResourceKind, list_name: str
    ) -> str:
        user = client.user_path.lstrip("/")
        if kind.name == "inbox":
            return f"{user}/mailFolders('inbox')/messages"
        if kind.name == "calendar":
            return f"{user}/events"
        if kind.name == "drive":
            return f"{user}/drive/root"
        task_list = await client.find_or_create_task_list(list_name)
        return f"{user}/todo/lists/{task_list['id']}/tasks"

    def _requested_expiry(self, kind: ResourceKind) -> datetime:
        return self._clock() + kind.max_lifetime - EXPIRY_MARGIN

    @asynccontextmanager
    async def _client(self, connection_id: str) -> AsyncIterator[GraphClient]:
        async with graph_client(
            self._engine, self._vault, connection_id, transport=self._transport
        ) as client:
            yield client

    # Store.

    async def _store(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with transaction(self._engine, write=True) as connection:
                return work(connection)

        return await asyncio.to_thread(run)

    @staticmethod
    def _broker_of(connection: Connection, connection_id: str) -> str:
        return get_m365_connection_by_id(connection, connection_id).broker_id


def _expiry(answer: dict[str, Any], asked: datetime) -> datetime:
    """The expiry Graph answered (it may shorten what was asked), else ours."""
    value = answer.get("expirationDateTime")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return asked
        if moment.tzinfo is not None:
            return moment
    return asked


def _resync_delivery(
    delivery_id: str,
    record: SubscriptionRecord,
    received_at: datetime,
    reason: str,
    events: list[GraphEvent],
) -> dict[str, Any]:
    """The delivery record of events found by a delta query, not received."""
    return {
        "id": delivery_id,
        "source": SOURCE,
        "received_at": received_at,
        "client_address": None,
        "status_code": 0,
        "outcome": "resync",
        "reason": f"delta query of subscription {record.id} ({record.kind}): "
        f"{reason}; {len(events)} event(s)",
        "broker_id": record.broker_id,
        "body_size": 0,
        "body_sha256": None,
        "event_id": None,
    }
