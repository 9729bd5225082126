"""Graph v1.0 routing: tokens, owners, faults and the per-mailbox limit.

Every request passes, in order: the bearer token check (401), the owner of
the resource (``/me``, ``/users/{id}``, ``/drives/{id}``), injected faults,
the per-mailbox concurrency limit (429), then a handler in ``todo``,
``outlook`` or ``onedrive``. Statuses follow the API reference
(``x-documented-success-status`` in the OpenAPI subset); behaviour the
documentation leaves open is marked ``GUESS``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brokerhooks.simulators.msgraph import drive as drives
from brokerhooks.simulators.msgraph import subscriptions
from brokerhooks.simulators.msgraph.common import Answer, GraphFault, graph_timestamp
from brokerhooks.simulators.msgraph.fields import (
    json_object,
    no_segment,
    require_method,
)
from brokerhooks.simulators.msgraph.mail import (
    handle_all_messages,
    handle_messages,
    inbox_segments,
)
from brokerhooks.simulators.msgraph.onedrive import handle_drive, handle_upload
from brokerhooks.simulators.msgraph.outlook import (
    cancel_event,
    handle_event,
    handle_events,
    send_mail,
)
from brokerhooks.simulators.msgraph.state import (
    AccessToken,
    RecordedRequest,
    Tenant,
    User,
)
from brokerhooks.simulators.msgraph.todo import handle_todo

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# Literal path segments; Graph matches them case-insensitively.
KEYWORDS = {
    word.casefold(): word
    for word in (
        "todo",
        "lists",
        "tasks",
        "linkedResources",
        "sendMail",
        "events",
        "cancel",
        "drive",
        "delta",
    )
}


@dataclass(frozen=True, slots=True)
class Principal:
    token: AccessToken
    user: User | None  # None for app-only tokens


@dataclass(frozen=True, slots=True)
class Target:
    """Whose data a request touches, and the path under it."""

    user: User
    path: str
    drive_address: str | None  # set for /drives/{id}/... requests


def routes(tenant: Tenant) -> list[Route]:
    """The Graph and upload-URL routes, bound to ``tenant``."""

    async def graph(request: Request) -> Response:
        body = await request.body()
        mailbox: str | None = None
        try:
            principal = _authenticate(tenant, request)
            rest = request.path_params["rest"]
            if rest.split("/", 1)[0].casefold() == "subscriptions":
                _raise_injected_fault(tenant, request)
                answer = await subscriptions.handle(
                    tenant,
                    request,
                    principal.token,
                    principal.user,
                    [segment for segment in rest.split("/")[1:] if segment],
                    body,
                )
                return _respond(tenant, request, body, None, answer)
            with tenant.lock:
                target = _target(tenant, principal, rest)
            mailbox = target.user.upn
            _raise_injected_fault(tenant, request)
            answer = await _limited(
                tenant,
                mailbox,
                lambda: _dispatch(tenant, request, principal, target, body),
                request.method,
            )
        except GraphFault as fault:
            answer = _error_answer(request, fault)
        finally:
            subscriptions.dispatch(tenant)
        return _respond(tenant, request, body, mailbox, answer)

    async def upload(request: Request) -> Response:
        body = await request.body()
        mailbox: str | None = None
        try:
            session = _upload_session(tenant, request.path_params["session_id"])
            mailbox = session.drive.owner_upn
            if "authorization" in request.headers:
                # GUESS: the docs warn an Authorization header "can cause"
                # a 401 on the upload URL; the simulator always refuses it.
                raise GraphFault(
                    401,
                    "unauthenticated",
                    "Do not send an Authorization header to the upload URL.",
                )
            _raise_injected_fault(tenant, request)
            answer = await _limited(
                tenant,
                mailbox,
                lambda: handle_upload(tenant, request, session, body),
                request.method,
            )
        except GraphFault as fault:
            answer = _error_answer(request, fault)
        finally:
            subscriptions.dispatch(tenant)
        return _respond(tenant, request, body, mailbox, answer)

    return [
        Route("/v1.0/{rest:path}", graph, methods=ALL_METHODS),
        Route("/upload/{session_id}", upload, methods=["PUT", "GET", "DELETE"]),
    ]


# The path through every request.


def _authenticate(tenant: Tenant, request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthenticated("Access token is empty.")
    with tenant.lock:
        token = tenant.access_tokens.get(value.strip())
        if token is None:
            raise _unauthenticated("Access token validation failure. Invalid token.")
        if token.expires_at <= tenant.clock():
            raise _unauthenticated("Lifetime validation failed, the token is expired.")
        user = tenant.users.get(token.user_id) if token.user_id else None
    return Principal(token=token, user=user)


def _unauthenticated(message: str) -> GraphFault:
    return GraphFault(
        401,
        "InvalidAuthenticationToken",
        message,
        {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
    )


def _target(tenant: Tenant, principal: Principal, rest: str) -> Target:
    head, _, tail = rest.partition("/")
    folded = head.casefold()
    if folded == "me":
        if principal.user is None:
            raise GraphFault(
                400,
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
            )
        return Target(principal.user, tail, None)
    if folded == "users":
        key, _, path = tail.partition("/")
        user = tenant.find_user(key)
        if user is None:
            raise GraphFault(
                404, "ErrorInvalidUser", f"The requested user '{key}' is invalid."
            )
        _check_access(principal, user)
        return Target(user, path, None)
    if folded == "drives":
        drive_id, _, address = tail.partition("/")
        for user in tenant.users.values():
            if user.drive.id == drive_id:
                _check_access(principal, user)
                return Target(user, "", address)
        raise GraphFault(404, "itemNotFound", "The drive could not be found.")
    raise no_segment(head)


def _check_access(principal: Principal, user: User) -> None:
    # GUESS: a delegated token reaches only its own user (no shared mailboxes
    # or delegates); an app-only token reaches everyone.
    if principal.user is not None and principal.user.id != user.id:
        raise GraphFault(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )


def _raise_injected_fault(tenant: Tenant, request: Request) -> None:
    with tenant.lock:
        fault = tenant.take_fault(request.method, request.url.path)
    if fault is None:
        return
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = f"{fault.retry_after:g}"
    raise GraphFault(fault.status, fault.code, fault.message, headers)


async def _limited(
    tenant: Tenant, mailbox: str, handler: Callable[[], Answer], method: str = "GET"
) -> Answer:
    """Run ``handler`` as one of at most ``concurrency_limit`` per mailbox."""
    key = mailbox.casefold()
    with tenant.lock:
        current = tenant.in_flight.get(key, 0)
        if current >= tenant.concurrency_limit:
            # GUESS: code and wording; the limit of four is documented.
            raise GraphFault(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                {"Retry-After": "1"},
            )
        tenant.in_flight[key] = current + 1
        tenant.max_in_flight[key] = max(tenant.max_in_flight.get(key, 0), current + 1)
    try:
        if tenant.latency:
            await asyncio.sleep(tenant.latency)
        with tenant.lock:
            answer = handler()
        if tenant.answer_delay and method != "GET":
            await asyncio.sleep(tenant.answer_delay)
        return answer
    finally:
        with tenant.lock:
            tenant.in_flight[key] -= 1


def _error_answer(request: Request, fault: GraphFault) -> Answer:
    error = {
        "code": fault.code,
        "message": fault.message,
        "innerError": {
            "date": graph_timestamp().split(".")[0],
            "request-id": str(uuid.uuid4()),
            "client-request-id": request.headers.get(
                "client-request-id", str(uuid.uuid4())
            ),
        },
    }
    return Answer(fault.status, {"error": error}, fault.headers)


def _respond(
    tenant: Tenant,
    request: Request,
    body: bytes,
    mailbox: str | None,
    answer: Answer,
) -> Response:
    with tenant.lock:
        tenant.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.url.path,
                query=request.url.query,
                status=answer.status,
                mailbox=mailbox,
                body=_parsed(request, body),
                body_size=len(body),
                had_authorization="authorization" in request.headers,
            )
        )
    headers = {"request-id": str(uuid.uuid4()), **answer.headers}
    if isinstance(answer.body, bytes):
        return Response(
            answer.body,
            status_code=answer.status,
            headers=headers,
            media_type="application/octet-stream",
        )
    if answer.body is None:
        return Response(status_code=answer.status, headers=headers)
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


def _parsed(request: Request, body: bytes) -> Any:
    if not body or "json" not in request.headers.get("content-type", ""):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


# Dispatch.


def _dispatch(
    tenant: Tenant, request: Request, principal: Principal, target: Target, body: bytes
) -> Answer:
    user = target.user
    if target.drive_address is not None:
        if target.drive_address.rstrip("/") == "root/delta":
            return _drive_delta(tenant, request, user)
        return handle_drive(tenant, request, user, target.drive_address, body)
    raw = [segment for segment in target.path.split("/") if segment]
    segments = [KEYWORDS.get(segment.casefold(), segment) for segment in raw]
    if raw[:1] and raw[0].casefold() == "messages":
        return handle_all_messages(tenant, request, user, raw[1:], body)
    inbox = inbox_segments(raw)
    if inbox is not None:
        return handle_messages(tenant, request, user, inbox, body)
    if segments[:1] == ["drive"]:
        if [segment.casefold() for segment in raw[1:]] == ["root", "delta"]:
            return _drive_delta(tenant, request, user)
        return handle_drive(tenant, request, user, target.path[len("drive/") :], body)
    if segments[:1] == ["todo"]:
        if principal.user is None and not tenant.allow_app_only_todo:
            raise GraphFault(
                403, "Forbidden", "Application permissions are not supported."
            )
        return _todo(tenant, request, user, segments[1:], body)
    if [segment.casefold() for segment in raw] == ["calendarview", "delta"]:
        removed = {
            "@odata.type": "#microsoft.graph.event",
            "@removed": {"reason": "deleted"},
        }
        return subscriptions.delta(
            tenant, request, user, "events", dict(user.events), removed
        )
    if segments[:1] == ["events"]:
        return _events(tenant, request, user, segments, body)
    match segments:
        case ["sendMail"]:
            require_method(request, "POST")
            return send_mail(tenant, user, json_object(body))
    raise no_segment(raw[0] if raw else "")


# Changes, noted for notifications and delta queries.

_REMOVED_TASK = {
    "@odata.type": "#microsoft.graph.todoTask",
    "@removed": {"reason": "deleted"},
}


def _todo(
    tenant: Tenant, request: Request, user: User, segments: list[str], body: bytes
) -> Answer:
    """To Do, noting each change of a task; ``lists/{id}/tasks/delta``."""
    match segments:
        case ["lists", list_id, "tasks", "delta"] if request.method == "GET":
            task_list = user.task_lists.get(list_id)
            if task_list is None:
                raise GraphFault(
                    404, "ErrorItemNotFound", "The specified object was not found."
                )
            return subscriptions.delta(
                tenant,
                request,
                user,
                f"todo:{list_id}",
                dict(task_list.tasks),
                _REMOVED_TASK,
            )
    answer = handle_todo(tenant, request, user, segments, body)
    match segments, request.method, answer.status:
        case ["lists", list_id, "tasks"], "POST", 201:
            _note(tenant, user, f"todo:{list_id}", answer, "created")
        case ["lists", list_id, "tasks", task_id], "PATCH", 200:
            _note(tenant, user, f"todo:{list_id}", answer, "updated")
        case ["lists", list_id, "tasks", task_id], "DELETE", 204:
            subscriptions.record_change(
                tenant, user, f"todo:{list_id}", task_id, "deleted"
            )
    return answer


def _events(
    tenant: Tenant, request: Request, user: User, segments: list[str], body: bytes
) -> Answer:
    """Calendar events, noting each change."""
    before = set(user.events)
    match segments:
        case ["events"]:
            answer = handle_events(tenant, request, user, body)
        case ["events", event_id]:
            answer = handle_event(request, user, event_id, body)
        case ["events", event_id, "cancel"]:
            require_method(request, "POST")
            answer = cancel_event(user, event_id, json_object(body))
        case _:
            raise no_segment("/".join(segments))
    if answer.status >= 300 or request.method == "GET":
        return answer
    match segments:
        case ["events"] if isinstance(answer.body, dict):
            if answer.body.get("id") not in before:
                _note(tenant, user, "events", answer, "created")
        case ["events", event_id] if request.method == "DELETE":
            subscriptions.record_change(tenant, user, "events", event_id, "deleted")
        case ["events", event_id, *_rest]:
            event = user.events.get(event_id)
            if event is not None:
                subscriptions.record_change(
                    tenant,
                    user,
                    "events",
                    event_id,
                    "updated",
                    etag=event.get("@odata.etag"),
                )
    return answer


def _note(
    tenant: Tenant, user: User, collection: str, answer: Answer, change_type: str
) -> None:
    body = answer.body if isinstance(answer.body, dict) else {}
    if isinstance(body.get("id"), str):
        subscriptions.record_change(
            tenant,
            user,
            collection,
            body["id"],
            change_type,
            etag=body.get("@odata.etag"),
        )


def _drive_delta(tenant: Tenant, request: Request, user: User) -> Answer:
    require_method(request, "GET")
    drive = user.drive
    items = {item_id: drive.to_json(item) for item_id, item in drive.items.items()}
    return subscriptions.delta(
        tenant, request, user, "drive", items, {"deleted": {"state": "deleted"}}
    )


def _upload_session(tenant: Tenant, session_id: str) -> drives.UploadSession:
    with tenant.lock:
        for user in tenant.users.values():
            session = user.drive.sessions.get(session_id)
            if session is not None:
                return session
    raise GraphFault(404, "itemNotFound", "The upload session was not found.")
