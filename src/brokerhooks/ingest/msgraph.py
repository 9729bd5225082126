"""``/hooks/msgraph`` and ``/hooks/msgraph/lifecycle``: Microsoft Graph's
change notifications and lifecycle notifications.

The order of checks, each with its answer:

1. ``?validationToken=`` (any method)       200 text/plain: the token,
                                            decoded (Graph's handshake)
2. method other than POST                   405
3. content type other than JSON             415
4. body over ``MAX_BODY_BYTES``             413
5. not ``{"value": [notification, ...]}``   400 with the reason
6. store unreachable                        503, so that Graph retries
7. otherwise                                202

Each notification in ``value`` is then judged alone. One whose
subscription is unknown, or whose ``clientState`` is missing or differs
from the subscription's (compared in constant time), is rejected: logged,
counted in the delivery record, never stored as an event. The answer stays
202 whatever each item's fate, even when none was valid: a forger learns
nothing from it, and Graph, which retries anything else for hours and marks
slow or failing endpoints, keeps delivering the other brokers' notifications
that share this endpoint.

A valid change notification becomes an event (``messageCreated``, ...) with
its ``process_event`` job, in one transaction with the delivery record. A
repeat of one stored within the dedupe window (same subscription, resource,
change type and version, the version being the item's etag or
notification id) is not stored again. A OneDrive notification, which
says only that something changed, queues a resynchronisation instead;
lifecycle notifications queue a reauthorization, a recreation or a
resynchronisation. Nothing is acknowledged before it is committed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from brokerhooks.connectors.msgraph.subscriptions import (
    DEDUPE_WINDOW,
    LIFECYCLE_PATH,
    NOTIFICATION_PATH,
    SHORT_DEDUPE_WINDOW,
)
from brokerhooks.errors import StoreUnavailable
from brokerhooks.ingest.msgraph_events import (
    CHANGE_TYPES,
    RESOURCE_KINDS,
    SOURCE,
    ResourceKind,
    event_type_for,
)
from brokerhooks.runtime import Runtime
from brokerhooks.security.secrets import Vault, constant_time_equal
from brokerhooks.store import subscriptions as store
from brokerhooks.store.database import transaction
from brokerhooks.store.events import delivery_write
from brokerhooks.store.subscriptions import GraphEvent, NotificationTarget
from brokerhooks.store.types import utcnow, uuid7

log = structlog.get_logger("brokerhooks.ingest")

# Graph batches notifications; without resource data each is under 1 kB.
MAX_BODY_BYTES = 1024 * 1024
MAX_ITEMS = 1000
MAX_TOKEN_LENGTH = 2048
MAX_ID_LENGTH = 255

# What becomes of a lifecycle notification: the subscription job it queues.
LIFECYCLE_ACTIONS = {
    "reauthorizationRequired": store.REAUTHORIZE,
    "subscriptionRemoved": store.RECREATE,
    "missed": store.RESYNC,
}


def routes() -> list[Route]:
    """Both endpoints; they behave alike, the second is for lifecycle events."""
    return [
        Route(NOTIFICATION_PATH, receive, methods=_METHODS),
        Route(LIFECYCLE_PATH, receive, methods=_METHODS),
    ]


_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class Rejection(Exception):
    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason


@dataclass(slots=True)
class Tally:
    """What became of each notification of one delivery."""

    counts: Counter[str] = field(default_factory=Counter)
    event_ids: list[str] = field(default_factory=list)
    brokers: set[str] = field(default_factory=set)

    @property
    def stored(self) -> int:
        return self.counts["stored"] + self.counts["lifecycle"] + self.counts["resync"]

    def outcome(self) -> str:
        if self.stored:
            return "accepted"
        if self.counts["duplicate"]:
            return "duplicate"
        return "rejected"

    def reason(self) -> str:
        return ", ".join(
            f"{self.counts[name]} {words}"
            for name, words in _WORDS.items()
            if self.counts[name]
        )


# What each count is called in a delivery's reason, in this order.
_WORDS = {
    "stored": "stored",
    "lifecycle": "lifecycle notification(s) queued",
    "resync": "resynchronisation(s) queued",
    "duplicate": "duplicate",
    "unsupported": "of an unsupported kind",
    "forged": "with a wrong clientState",
    "missing_client_state": "without clientState",
    "unknown_subscription": "for an unknown subscription",
    "malformed": "malformed",
}


async def receive(request: Request) -> Response:
    """Answer Graph's handshake, or accept one delivery of notifications."""
    runtime: Runtime = request.app.state.runtime
    started = time.perf_counter()
    address = request.client.host if request.client else None
    delivery: dict[str, Any] = {
        "id": uuid7(),
        "source": SOURCE,
        "received_at": utcnow(),
        "client_address": address,
        "broker_id": None,
        "event_id": None,
        "body_size": 0,
        "body_sha256": None,
        "reason": None,
    }
    tally = Tally()
    try:
        if "validationtoken" in {name.lower() for name in request.query_params}:
            response = _handshake(request, delivery)
            _record(runtime, delivery, 200, "validation", None)
        else:
            response = await _deliver(request, runtime, delivery, tally)
    except Rejection as rejection:
        response = JSONResponse(
            {"error": rejection.outcome, "detail": rejection.reason},
            status_code=rejection.status,
        )
        _record(
            runtime, delivery, rejection.status, rejection.outcome, rejection.reason
        )
    runtime.metrics.ingest_latency.labels(SOURCE).observe(time.perf_counter() - started)
    log.info(
        "delivery",
        source=SOURCE,
        delivery=delivery["id"],
        path=request.url.path,
        outcome=delivery["outcome"],
        status=response.status_code,
        reason=delivery["reason"],
        client=address,
        size=delivery["body_size"],
        sha256=delivery["body_sha256"],
        event_id=delivery["event_id"],
        events=len(tally.event_ids),
        ms=round((time.perf_counter() - started) * 1000, 2),
    )
    return response


def _handshake(request: Request, delivery: dict[str, Any]) -> Response:
    """Step 1: echo the token, as plain text that no browser will render."""
    token = next(
        value
        for name, value in request.query_params.items()
        if name.lower() == "validationtoken"
    )
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise Rejection(
            400,
            "bad_request",
            f"validationToken must have 1 to {MAX_TOKEN_LENGTH} characters",
        )
    delivery["body_size"] = len(token)
    return PlainTextResponse(
        token,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )


async def _deliver(
    request: Request, runtime: Runtime, delivery: dict[str, Any], tally: Tally
) -> Response:
    """Steps 2 to 7."""
    if request.method != "POST":
        raise Rejection(
            405,
            "method_not_allowed",
            f"{request.method} is not accepted here; Microsoft Graph sends POST",
        )
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Rejection(
            415,
            "unsupported_media_type",
            f"content type {content_type or '(none)'!r} is not JSON",
        )
    body = await _read_body(request, delivery)
    items = _parse(body)

    try:
        stored = await asyncio.to_thread(
            _accept, runtime.engine, runtime.vault, items, delivery, tally
        )
    except StoreUnavailable as error:
        raise Rejection(503, "store_unavailable", str(error)) from None
    if not stored:
        runtime.writer.write_later(delivery_write(delivery))

    runtime.metrics.deliveries.labels(SOURCE, delivery["outcome"]).inc()
    if tally.stored and runtime.writer.on_commit is not None:
        runtime.writer.on_commit()  # wake an embedded worker
    return Response(status_code=202)


async def _read_body(request: Request, delivery: dict[str, Any]) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        delivery["body_size"] = int(declared)
        raise _too_large(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            delivery["body_size"] = size
            raise _too_large(size)
    body = b"".join(chunks)
    delivery["body_size"] = size
    delivery["body_sha256"] = hashlib.sha256(body).hexdigest()
    return body


def _too_large(size: int) -> Rejection:
    return Rejection(
        413, "too_large", f"body of {size} bytes is over the limit of {MAX_BODY_BYTES}"
    )


def _parse(body: bytes) -> list[Any]:
    """Step 5: ``{"value": [...]}``; the items are judged one by one later."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise Rejection(
            400, "bad_request", f"body is not valid JSON: {error}"
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("value"), list):
        raise Rejection(
            400, "bad_request", "body must be a JSON object with a 'value' array"
        )
    items: list[Any] = document["value"]
    if not items or len(items) > MAX_ITEMS:
        raise Rejection(
            400, "bad_request", f"'value' must hold 1 to {MAX_ITEMS} notifications"
        )
    return items


# Judging and storing, in a thread.


@dataclass(frozen=True, slots=True)
class Valid:
    """A notification whose clientState matched its subscription."""

    target: NotificationTarget
    item: dict[str, Any]


def _accept(
    engine: Engine,
    vault: Vault,
    items: list[Any],
    delivery: dict[str, Any],
    tally: Tally,
) -> bool:
    """Judge and store the items; False if none was valid (nothing written)."""
    with transaction(engine) as connection:
        valid = _judge(connection, vault, items, tally)
    delivery.update(status_code=202)
    if not valid:
        delivery.update(outcome=tally.outcome(), reason=tally.reason())
        return False

    for attempt in (1, 2):
        judged = Tally(counts=Counter(tally.counts))
        try:
            with transaction(engine, write=True) as connection:
                _store(connection, valid, delivery, judged)
        except IntegrityError:
            # Another process stored a repeat of one of these at the same
            # moment (PostgreSQL); the second pass sees its key.
            if attempt == 2:
                raise StoreUnavailable(
                    "notification keys kept colliding; Graph will retry"
                ) from None
            continue
        tally.counts, tally.event_ids = judged.counts, judged.event_ids
        tally.brokers = judged.brokers
        return True
    raise AssertionError("unreachable")


def _judge(
    connection: Connection, vault: Vault, items: list[Any], tally: Tally
) -> list[Valid]:
    """Keep the items whose clientState matches their subscription's."""
    ids = [
        item["subscriptionId"]
        for item in items
        if isinstance(item, dict) and isinstance(item.get("subscriptionId"), str)
    ]
    targets = store.notification_targets(connection, ids)
    creating: list[NotificationTarget] | None = None
    valid = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(
            item.get("subscriptionId"), str
        ):
            tally.counts["malformed"] += 1
            continue
        given = item.get("clientState")
        target = targets.get(item["subscriptionId"])
        if target is None and isinstance(given, str):
            # Graph may notify before we have stored the id it gave us.
            if creating is None:
                creating = store.subscriptions_being_created(connection)
            target = next((t for t in creating if _matches(vault, t, given)), None)
        verdict = _verdict(vault, target, given)
        if verdict is not None:
            tally.counts[verdict] += 1
            log.warning(
                "graph_notification_rejected",
                reason=verdict,
                graph_subscription=item["subscriptionId"][:100],
                subscription=target.id if target else None,
            )
            continue
        assert target is not None
        valid.append(Valid(target, item))
    return valid


def _verdict(vault: Vault, target: NotificationTarget | None, given: Any) -> str | None:
    if target is None:
        return "unknown_subscription"
    if not isinstance(given, str) or not given:
        return "missing_client_state"
    if not _matches(vault, target, given):
        return "forged"
    return None


def _matches(vault: Vault, target: NotificationTarget, given: str) -> bool:
    expected = vault.decrypt(target.client_state_encrypted).reveal()
    return constant_time_equal(expected, given)


def _store(
    connection: Connection, valid: list[Valid], delivery: dict[str, Any], tally: Tally
) -> None:
    """Events, jobs, keys and the delivery record, in the caller's transaction."""
    received_at: datetime = delivery["received_at"]
    events: list[GraphEvent] = []
    for notice in valid:
        tally.brokers.add(notice.target.broker_id)
        lifecycle = notice.item.get("lifecycleEvent")
        if lifecycle is not None:
            _lifecycle(connection, notice, str(lifecycle), tally)
            continue
        kind = RESOURCE_KINDS[notice.target.kind]
        if not kind.per_item_notifications:
            queued = store.schedule_job(
                connection,
                broker_id=notice.target.broker_id,
                subscription_id=notice.target.id,
                action=store.RESYNC,
                unless_queued=True,
            )
            tally.counts["resync" if queued else "duplicate"] += 1
            continue
        event = _event(notice, kind, tally)
        if event is None:
            continue
        key, window = _dedupe_key(notice)
        if store.seen_notification(connection, key, since=received_at - window):
            tally.counts["duplicate"] += 1
            continue
        events.append(event)
        store.remember_notification(
            connection, key, subscription_id=notice.target.id, event_id=event.id
        )
        tally.counts["stored" if event.supported else "unsupported"] += 1

    ids = store.add_events(
        connection, events, delivery_id=delivery["id"], received_at=received_at
    )
    tally.event_ids.extend(
        event_id for event_id, event in zip(ids, events, strict=True) if event.supported
    )
    store.notified(connection, (notice.target.id for notice in valid), received_at)
    delivery.update(
        outcome=tally.outcome(),
        reason=tally.reason(),
        broker_id=next(iter(tally.brokers)) if len(tally.brokers) == 1 else None,
        event_id=ids[0] if ids else None,
    )
    store.add_delivery(connection, delivery)


def _event(notice: Valid, kind: ResourceKind, tally: Tally) -> GraphEvent | None:
    item = notice.item
    change = item.get("changeType")
    entity_id = _entity_id(item)
    if not isinstance(change, str) or entity_id is None:
        tally.counts["malformed"] += 1
        return None
    # Graph reads its enums case-insensitively; so do we.
    change = change.strip().lower()
    supported = change in CHANGE_TYPES
    return GraphEvent(
        broker_id=notice.target.broker_id,
        subscription_id=notice.target.id,
        type=event_type_for(kind, change)
        if supported
        else f"{kind.prefix}:{change}"[:100],
        entity_id=entity_id,
        notification=item,
        supported=supported,
    )


def _entity_id(item: dict[str, Any]) -> str | None:
    """The changed item's id: ``resourceData.id``, else the resource's end."""
    data = item.get("resourceData")
    value = data.get("id") if isinstance(data, dict) else None
    if not isinstance(value, str) or not value:
        resource = item.get("resource")
        if not isinstance(resource, str) or "/" not in resource.strip("/"):
            return None
        value = resource.rstrip("/").rsplit("/", 1)[1]
        # Outlook writes Messages('id') in some resources.
        if value.endswith("')") and "('" in value:
            value = value[value.index("('") + 2 : -2]
    if not value or len(value) > MAX_ID_LENGTH:
        return None
    return value


def _dedupe_key(notice: Valid) -> tuple[str, timedelta]:
    """The key that Graph's repeats of this notification share, and its window."""
    item = notice.item
    data = item.get("resourceData")
    etag = data.get("@odata.etag") if isinstance(data, dict) else None
    version = etag or item.get("id") or ""
    parts = [
        notice.target.id,
        str(item.get("resource", "")).casefold(),
        str(item.get("changeType", "")).lower(),
        str(version),
    ]
    digest = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return digest, DEDUPE_WINDOW if version else SHORT_DEDUPE_WINDOW


def _lifecycle(connection: Connection, notice: Valid, event: str, tally: Tally) -> None:
    action = LIFECYCLE_ACTIONS.get(event)
    if action is None:
        tally.counts["unsupported"] += 1
        return
    store.record_lifecycle(connection, notice.target.id, event)
    queued = store.schedule_job(
        connection,
        broker_id=notice.target.broker_id,
        subscription_id=notice.target.id,
        action=action,
        unless_queued=True,
    )
    tally.counts["lifecycle" if queued else "duplicate"] += 1


def _record(
    runtime: Runtime,
    delivery: dict[str, Any],
    status: int,
    outcome: str,
    reason: str | None,
) -> None:
    """Keep the record of a handshake or a refused delivery, without waiting."""
    delivery.update(status_code=status, outcome=outcome, reason=reason)
    runtime.metrics.deliveries.labels(SOURCE, outcome).inc()
    if status != 503:
        runtime.writer.write_later(delivery_write(delivery))
