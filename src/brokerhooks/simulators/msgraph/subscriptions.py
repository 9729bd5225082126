"""Change notifications: subscriptions, the validation handshake, deliveries,
lifecycle notifications and delta queries.

What is documented (msgraph.md section 1): ``POST /subscriptions`` calls the
notification URL (and the lifecycle URL) with ``?validationToken=`` and
creates the subscription only on a 200 ``text/plain`` echo of the decoded
token within 10 s; expiry is capped per resource (4,230 minutes for mail,
events and To Do, 42,300 for a drive root); a drive root takes only
``updated``; notifications carry ``subscriptionId``, ``clientState``,
``changeType``, ``resource`` and ``resourceData``; lifecycle notifications
carry ``lifecycleEvent`` instead; a non-2xx answer is retried with
back-off.

GUESSes, marked where they are made: error codes and wording; the shape of
To Do notifications; that OneDrive notifications carry no resourceData;
delta tokens as change numbers; the back-off steps (scaled down).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

import httpx
import structlog
from starlette.requests import Request

from brokerhooks.simulators.msgraph.common import (
    JSON,
    Answer,
    GraphFault,
    graph_timestamp,
)
from brokerhooks.simulators.msgraph.fields import check_fields, json_object
from brokerhooks.simulators.msgraph.state import (
    AccessToken,
    Change,
    SentNotification,
    Subscription,
    Tenant,
    User,
)

log = structlog.get_logger("brokerhooks.simulators.msgraph")

CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
# Maximum lifetimes in minutes [doc].
MAX_MINUTES = {"inbox": 4230, "events": 4230, "todo": 4230, "drive": 42300}
SUBSCRIPTION_FIELDS = frozenset(
    {
        "changeType",
        "notificationUrl",
        "lifecycleNotificationUrl",
        "resource",
        "expirationDateTime",
        "clientState",
        "includeResourceData",
        "encryptionCertificate",
        "encryptionCertificateId",
        "latestSupportedTlsVersion",
        "notificationUrlAppId",
        "notificationQueryOptions",
    }
)
MAX_CLIENT_STATE = 128  # the older resource page says 128 [doc]
MAX_PER_MAILBOX = 1000  # Outlook's limit across apps [doc]
_ODATA_TYPES = {
    "inbox": ("#Microsoft.Graph.Message", "Messages"),
    "events": ("#Microsoft.Graph.Event", "Events"),
    "todo": ("#Microsoft.Graph.todoTask", "tasks"),
}
_tasks: set[asyncio.Task[None]] = set()


# The HTTP side: /v1.0/subscriptions...


async def handle(
    tenant: Tenant,
    request: Request,
    token: AccessToken,
    user: User | None,
    segments: list[str],
    body: bytes,
) -> Answer:
    """``/subscriptions``, ``/subscriptions/{id}``, ``.../{id}/reauthorize``."""
    method = request.method
    base = str(request.base_url).rstrip("/")
    if segments == [] and method == "POST":
        return await _create(tenant, token, user, json_object(body), base)
    if segments == [] and method == "GET":
        with tenant.lock:
            mine = [
                _to_json(tenant, sub)
                for sub in _live(tenant).values()
                if sub.app_id == token.client_id
            ]
        return Answer(
            200,
            {"@odata.context": f"{base}/v1.0/$metadata#subscriptions", "value": mine},
        )
    if len(segments) == 2 and segments[1].casefold() == "reauthorize":
        if method != "POST":
            raise _not_allowed(method)
        with tenant.lock:
            _owned(tenant, token, segments[0])
        return Answer(204)
    if len(segments) != 1:
        raise GraphFault(400, "BadRequest", "Resource not found for the segment.")
    with tenant.lock:
        sub = _owned(tenant, token, segments[0])
        if method == "GET":
            return Answer(200, _to_json(tenant, sub))
        if method == "DELETE":
            del tenant.subscriptions[sub.id]
            return Answer(204)
        if method != "PATCH":
            raise _not_allowed(method)
        changes = json_object(body)
        check_fields(
            changes,
            frozenset({"expirationDateTime", "notificationUrl"}),
            "subscription",
        )
        if "expirationDateTime" in changes:
            sub.expires_at = _expiry(
                tenant, changes["expirationDateTime"], sub.collection
            )
        return Answer(200, _to_json(tenant, sub))


async def _create(
    tenant: Tenant, token: AccessToken, user: User | None, body: JSON, base: str
) -> Answer:
    check_fields(body, SUBSCRIPTION_FIELDS, "subscription")
    for name in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
        if not isinstance(body.get(name), str) or not body[name]:
            # GUESS: code and wording.
            raise GraphFault(400, "InvalidRequest", f"'{name}' is required.")
    client_state = body.get("clientState")
    if client_state is not None and (
        not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE
    ):
        raise GraphFault(
            400, "InvalidRequest", "clientState must be at most 128 characters."
        )
    with tenant.lock:
        owner, collection = _parse_resource(tenant, token, user, body["resource"])
        change_types = _change_types(body["changeType"], collection)
        expires_at = _expiry(tenant, body["expirationDateTime"], collection)
        if sum(s.user_id == owner.id for s in tenant.subscriptions.values()) >= (
            MAX_PER_MAILBOX
        ):
            raise GraphFault(403, "ExtensionError", "Too many subscriptions.")
    urls = [body["notificationUrl"]]
    lifecycle = body.get("lifecycleNotificationUrl")
    if lifecycle is not None:
        urls.append(str(lifecycle))
    for url in urls:
        _check_url(tenant, url)
        await _validate(tenant, url)

    sub = Subscription(
        id=str(uuid.uuid4()),
        app_id=token.client_id,
        creator_id=token.user_id,
        user_id=owner.id,
        collection=collection,
        resource=body["resource"],
        change_types=change_types,
        notification_url=body["notificationUrl"],
        lifecycle_url=str(lifecycle) if lifecycle is not None else None,
        client_state=client_state,
        expires_at=expires_at,
    )
    with tenant.lock:
        tenant.subscriptions[sub.id] = sub
        answer = _to_json(tenant, sub)
    return Answer(
        201,
        {"@odata.context": f"{base}/v1.0/$metadata#subscriptions/$entity", **answer},
    )


def _parse_resource(
    tenant: Tenant, token: AccessToken, user: User | None, resource: str
) -> tuple[User, str]:
    """Whose data a resource path names, and which collection of it."""
    segments = [segment for segment in resource.strip().split("/") if segment]
    folded = [segment.casefold() for segment in segments]
    if folded[:1] == ["me"]:
        if user is None:
            raise GraphFault(
                400, "BadRequest", "/me request is only valid with delegated flow."
            )
        owner, rest = user, segments[1:]
    elif folded[:1] == ["users"] and len(segments) >= 2:
        found = tenant.find_user(segments[1])
        if found is None:
            raise GraphFault(404, "ErrorInvalidUser", "The requested user is invalid.")
        if user is not None and user.id != found.id:
            raise GraphFault(403, "ErrorAccessDenied", "Access is denied.")
        owner, rest = found, segments[2:]
    elif folded[:1] == ["drives"] and len(segments) >= 2:
        drive_owner = next(
            (u for u in tenant.users.values() if u.drive.id == segments[1]), None
        )
        if drive_owner is None:
            raise GraphFault(404, "itemNotFound", "The drive could not be found.")
        owner, rest = drive_owner, ["drive", *segments[2:]]
    else:
        raise _unsupported(resource)
    collection = _collection(tenant, token, user, owner, rest)
    if collection is None:
        raise _unsupported(resource)
    return owner, collection


def _collection(
    tenant: Tenant,
    token: AccessToken,
    user: User | None,
    owner: User,
    rest: list[str],
) -> str | None:
    folded = [segment.casefold().replace("'", "").replace('"', "") for segment in rest]
    if folded in (["messages"], ["mailfolders(inbox)", "messages"]):
        return "inbox"
    if folded == ["mailfolders", "inbox", "messages"]:
        return "inbox"
    if folded == ["events"]:
        return "events"
    if folded == ["drive", "root"]:
        return "drive"
    if len(rest) == 4 and folded[0] == "todo" and folded[1::2] == ["lists", "tasks"]:
        if user is None and not tenant.allow_app_only_todo_subscriptions:
            # To Do subscriptions exist only under /me [doc].
            raise GraphFault(
                400, "ExtensionError", "Only delegated To Do subscriptions work."
            )
        if rest[2] not in owner.task_lists:
            raise GraphFault(404, "ErrorItemNotFound", "The list was not found.")
        return f"todo:{rest[2]}"
    return None


def _unsupported(resource: str) -> GraphFault:
    # GUESS: code and wording.
    return GraphFault(
        400,
        "ExtensionError",
        f"Resource '{resource}' is not supported for subscriptions.",
    )


def _change_types(value: str, collection: str) -> tuple[str, ...]:
    wanted = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    if not wanted or set(wanted) - set(CHANGE_TYPES):
        raise GraphFault(400, "InvalidRequest", f"Invalid changeType '{value}'.")
    if collection == "drive" and wanted != ("updated",):
        # A drive root supports only `updated` [doc].
        raise GraphFault(
            400, "InvalidRequest", "Only 'updated' is supported for a drive root."
        )
    return wanted


def _expiry(tenant: Tenant, value: object, collection: str) -> float:
    if not isinstance(value, str):
        raise GraphFault(400, "InvalidRequest", "expirationDateTime must be a string.")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise GraphFault(
            400, "InvalidRequest", "expirationDateTime is not a date and time."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    expires = moment.timestamp()
    now = tenant.clock()
    minutes = MAX_MINUTES[collection.split(":", 1)[0]]
    if expires <= now:
        raise GraphFault(
            400, "InvalidRequest", "Subscription expiration must be in the future."
        )
    if expires > now + minutes * 60:
        # The docs say a longer expiry "will fail in the future"; it does here.
        raise GraphFault(
            400,
            "InvalidRequest",
            f"Subscription expiration can only be {minutes} minutes in the future.",
        )
    return expires


def _check_url(tenant: Tenant, url: str) -> None:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    allowed = parts.scheme == "https" or (
        parts.scheme == "http" and loopback and tenant.allow_http_loopback_notifications
    )
    if not allowed:
        raise GraphFault(
            400, "ValidationError", f"The notification URL must be https: {url}"
        )


async def _validate(tenant: Tenant, url: str) -> None:
    """The handshake: 200, text/plain, the decoded token, within 10 s."""
    # Graph's tokens hold spaces and colons, so an endpoint that echoes the
    # token still URL-encoded fails, as it would against Graph.
    token = (
        "Validation: Testing client application reachability for subscription "
        f"Request-Id: {uuid.uuid4()}"
    )
    target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token)}"
    status: int | None = None
    try:
        async with _client(tenant, tenant.validation_timeout) as client:
            response = await client.post(
                target, headers={"Content-Type": "text/plain; charset=utf-8"}
            )
        status = response.status_code
        ok = (
            status == 200
            and response.headers.get("content-type", "").startswith("text/plain")
            and response.text == token
        )
    except httpx.HTTPError:
        ok = False
    with tenant.lock:
        tenant.validations.append((url, status))
    if not ok:
        raise GraphFault(
            400,
            "ValidationError",
            "Subscription validation request failed. Notification endpoint must "
            "respond with 200 OK to validation request.",
        )


def _owned(tenant: Tenant, token: AccessToken, subscription_id: str) -> Subscription:
    sub = _live(tenant).get(subscription_id)
    if sub is None or sub.app_id != token.client_id:
        raise GraphFault(
            404,
            "ResourceNotFound",
            f"The object was not found: subscription {subscription_id}.",
        )
    return sub


def _live(tenant: Tenant) -> dict[str, Subscription]:
    """Subscriptions not expired (expired ones are forgotten)."""
    now = tenant.clock()
    for sub_id in [s.id for s in tenant.subscriptions.values() if s.expires_at <= now]:
        del tenant.subscriptions[sub_id]
    return tenant.subscriptions


def _to_json(tenant: Tenant, sub: Subscription) -> JSON:
    return {
        "id": sub.id,
        "resource": sub.resource,
        "applicationId": sub.app_id,
        "changeType": ",".join(sub.change_types),
        "clientState": sub.client_state,
        "notificationUrl": sub.notification_url,
        "lifecycleNotificationUrl": sub.lifecycle_url,
        "expirationDateTime": _iso(sub.expires_at),
        "creatorId": sub.creator_id,
        "latestSupportedTlsVersion": "v1_2",
        "includeResourceData": False,
    }


def _not_allowed(method: str) -> GraphFault:
    return GraphFault(405, "BadRequest", f"The {method} method is not allowed here.")


# Changes and the notifications they send.


def record_change(
    tenant: Tenant,
    user: User,
    collection: str,
    item_id: str,
    change_type: str,
    *,
    etag: str | None = None,
    notify: bool = True,
) -> None:
    """Note a change (under ``tenant.lock``); queue its notifications.

    ``notify=False`` makes a change whose notification is lost: only a
    delta query finds it (after a ``missed``).
    """
    seq = len(tenant.changes) + 1
    tenant.changes.append(Change(seq, user.id, collection, item_id, change_type, etag))
    if not notify:
        return
    # Any change under a drive's root is an `updated` of the root [doc].
    notified = "updated" if collection == "drive" else change_type
    for sub in _live(tenant).values():
        if sub.id in tenant.muted or not sub.watches(user.id, collection, notified):
            continue
        item = _notification(tenant, sub, user, item_id, notified, etag)
        tenant.outbox.append((sub, item, False))


def _notification(
    tenant: Tenant,
    sub: Subscription,
    user: User,
    item_id: str,
    change_type: str,
    etag: str | None,
) -> JSON:
    item: JSON = {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": _iso(sub.expires_at),
        "changeType": change_type,
        "tenantId": tenant.tenant_id,
        "clientState": _client_state(tenant, sub),
    }
    kind = sub.collection.split(":", 1)[0]
    if kind == "drive":
        # GUESS: OneDrive says only that something under the root changed.
        item["resource"] = sub.resource
        return item
    odata_type, segment = _ODATA_TYPES[kind]
    if kind == "todo":
        list_id = sub.collection.split(":", 1)[1]
        # GUESS: To Do's resource path, by analogy with Outlook's.
        path = f"Users/{user.id}/todo/lists/{list_id}/tasks/{item_id}"
    else:
        path = f"Users/{user.id}@{tenant.tenant_id}/{segment}/{item_id}"
    item["resource"] = path
    data: JSON = {"@odata.type": odata_type, "@odata.id": path, "id": item_id}
    if etag is not None:
        data["@odata.etag"] = etag
    item["resourceData"] = data
    return item


def _client_state(tenant: Tenant, sub: Subscription) -> str | None:
    if tenant.forge_client_states > 0:
        tenant.forge_client_states -= 1
        return "forged-" + uuid.uuid4().hex
    return sub.client_state


def lifecycle(tenant: Tenant, subscription_id: str, event: str) -> None:
    """Queue a lifecycle notification (under ``tenant.lock``).

    ``subscriptionRemoved`` also removes the subscription, as Graph does.
    """
    if event not in LIFECYCLE_EVENTS:
        raise ValueError(f"lifecycle events are {', '.join(LIFECYCLE_EVENTS)}")
    sub = tenant.subscriptions[subscription_id]
    item: JSON = {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": _iso(sub.expires_at),
        "tenantId": tenant.tenant_id,
        "clientState": _client_state(tenant, sub),
        "lifecycleEvent": event,
    }
    if event == "subscriptionRemoved":
        del tenant.subscriptions[sub.id]
    tenant.outbox.append((sub, item, True))


def dispatch(tenant: Tenant) -> None:
    """Send what the outbox holds, in the background of the running loop."""
    with tenant.lock:
        pending, tenant.outbox = tenant.outbox, []
    if not pending:
        return
    batches: dict[tuple[str, bool], list[JSON]] = {}
    for sub, item, is_lifecycle in pending:
        url = (
            (sub.lifecycle_url or sub.notification_url)
            if is_lifecycle
            else (sub.notification_url)
        )
        batches.setdefault((url, is_lifecycle), []).append(item)
    for (url, is_lifecycle), items in batches.items():
        task = asyncio.get_running_loop().create_task(
            _deliver(tenant, url, {"value": items}, is_lifecycle)
        )
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)


async def flush() -> None:
    """Wait for every delivery started from this event loop."""
    loop = asyncio.get_running_loop()
    while waiting := [task for task in _tasks if task.get_loop() is loop]:
        await asyncio.gather(*waiting, return_exceptions=True)


async def _deliver(tenant: Tenant, url: str, body: JSON, is_lifecycle: bool) -> None:
    """POST one batch; repeat it if asked; retry failures with back-off."""
    content = json.dumps(body).encode()
    async with _client(tenant, tenant.notification_timeout) as client:
        for _copy in range(1 + tenant.duplicate_deliveries):
            for attempt, delay in enumerate(
                (0.0, *tenant.notification_retry_delays), 1
            ):
                if delay:
                    await asyncio.sleep(delay)
                if await _post(
                    tenant, client, url, body, content, attempt, is_lifecycle
                ):
                    break


async def _post(
    tenant: Tenant,
    client: httpx.AsyncClient,
    url: str,
    body: JSON,
    content: bytes,
    attempt: int,
    is_lifecycle: bool,
) -> bool:
    started = time.perf_counter()
    status: int | None = None
    error: str | None = None
    try:
        response = await client.post(
            url,
            content=content,
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        status = response.status_code
    except httpx.HTTPError as failure:
        error = type(failure).__name__
    sent = SentNotification(
        url=url,
        body=body,
        attempt=attempt,
        status=status,
        error=error,
        seconds=time.perf_counter() - started,
        lifecycle=is_lifecycle,
    )
    with tenant.lock:
        tenant.notifications.append(sent)
    if not sent.ok:
        log.warning(
            "simulator_notification_refused", url=url, status=status, error=error
        )
    return sent.ok


def _client(tenant: Tenant, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=tenant.notification_transport, timeout=timeout, trust_env=False
    )


def _iso(epoch: float) -> str:
    return graph_timestamp(datetime.fromtimestamp(epoch, UTC))


# Delta queries.


def delta(
    tenant: Tenant,
    request: Request,
    user: User,
    collection: str,
    items: dict[str, JSON],
    removed: JSON,
) -> Answer:
    """Changes since the request's token (all items without one), paged.

    GUESS: tokens are change numbers; ``$deltatoken`` (Outlook, To Do) and
    ``token`` (OneDrive, with ``latest``) both work. A token older than
    ``delta_floor`` is refused with 410, as an expired one is.
    """
    params = request.query_params
    current = len(tenant.changes)
    skip = params.get("$skiptoken")
    if skip:
        since, upto, offset = (int(part) for part in skip.split("."))
    else:
        offset, upto = 0, current
        position = params.get("$deltatoken") or params.get("token")
        if position == "latest":
            return Answer(
                200, {"value": [], "@odata.deltaLink": _link(request, current)}
            )
        since = int(position) if position and position.isdigit() else -1
        if 0 <= since < tenant.delta_floor:
            # GUESS: code and wording.
            raise GraphFault(
                410, "SyncStateNotFound", "The sync state was not found; resync."
            )
    if since < 0:
        values = list(items.values())
    else:
        latest: dict[str, str] = {}
        for change in tenant.changes[since:upto]:
            if change.user_id == user.id and change.collection == collection:
                latest[change.item_id] = change.change_type
        values = [
            items[item_id]
            if item_id in items and change_type != "deleted"
            else {**removed, "id": item_id}
            for item_id, change_type in latest.items()
        ]
    size = tenant.page_size or len(values) or 1
    page = values[offset : offset + size]
    body: JSON = {"value": page}
    if offset + size < len(values):
        next_skip = f"{max(since, -1)}.{upto}.{offset + size}"
        body["@odata.nextLink"] = str(
            request.url.remove_query_params(
                ["$deltatoken", "token"]
            ).include_query_params(**{"$skiptoken": next_skip})
        )
    else:
        body["@odata.deltaLink"] = _link(request, upto)
    return Answer(200, body)


def _link(request: Request, seq: int) -> str:
    url = request.url.remove_query_params(["$deltatoken", "token", "$skiptoken"])
    return str(url.include_query_params(**{"$deltatoken": seq}))
