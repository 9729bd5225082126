"""The simulator's HTTP side: ``POST /graphql`` and the ``/_sim`` control API.

The control API (JSON in, JSON out; no authentication, the simulator is for
loopback use) drives the same changes as the Python control methods:

====================================================  ==========================
request                                               change
====================================================  ==========================
``GET /_sim/state``                                   (everything, as stored)
``POST /_sim/deals`` {name, stage?, workflow?,        create a deal
owner?, contact?, value?, dueDate?, labels?}
``POST /_sim/deals/{id}`` {TicketInput fields}        ``ticketUpdate``
``POST /_sim/deals/{id}/stage`` {stage}               move to a stage (by name)
``POST /_sim/deals/{id}/owner`` {owner}               change owner (name or id)
``POST /_sim/deals/{id}/due-date`` {dueDate}          ISO date/time, epoch ms or
                                                      null
``POST /_sim/deals/{id}/status`` {status}             won, lost, in_progress
``POST /_sim/deals/{id}/notes`` {content, owner?}     add a note
``POST /_sim/deals/{id}/attachments`` {name}          attach a file
``POST /_sim/deals/{id}/required-documents`` {name}   ask for a document
``POST /_sim/notes/{id}`` {content}                   change a note
``POST /_sim/contacts`` {firstName, familyName,       create a contact
email?, phone?, owner?}
``POST /_sim/contacts/{id}`` {firstName?, ...}        change a contact
``GET|POST /_sim/faults`` {latency?, failure_rate?,   read or set faults;
fail_next?, failure_status?, retry_after?,            ``remove_fields`` takes
expire_tokens?, revoke_tokens?, remove_fields?,       ``["Ticket.dueDate"]``
restore_schema?}
``GET /_sim/requests``                                GraphQL requests by
                                                      operation name
``GET /_sim/webhooks``                                webhooks sent, with status
``POST /_sim/flush``                                  wait for queued webhooks
====================================================  ==========================

Changes answer ``{"events": [...]}`` (and ``"id"`` when they create);
an unknown id answers 404, a refused change 400, both with ``"error"``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from brokerhooks.simulators.salestrekker.api import RequestContext
from brokerhooks.simulators.salestrekker.state import SimulatorError, UnknownRecord

if TYPE_CHECKING:
    from brokerhooks.simulators.salestrekker.simulator import SalesTrekkerSimulator

FLUSH_ON_SHUTDOWN_SECONDS = 10.0

# GUESS: SalesTrekker's answer to a bad or expired token is not public.
EXPIRED_TOKEN_BODY = {
    "data": None,
    "errors": [
        {
            "message": "Invalid or expired token",
            "extensions": {"code": "UNAUTHENTICATED"},
        }
    ],
}


def build_app(simulator: SalesTrekkerSimulator) -> Starlette:
    """The ASGI app of ``simulator``."""

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        try:
            async with asyncio.timeout(FLUSH_ON_SHUTDOWN_SECONDS):
                await simulator.flush()
        except TimeoutError:
            pass

    def control(
        change: Callable[
            [SalesTrekkerSimulator, Request, dict[str, Any]], Awaitable[Any]
        ],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await _control(simulator, request, change)

        return endpoint

    async def graphql_endpoint(request: Request) -> Response:
        return await _graphql(simulator, request)

    routes = [
        Route("/graphql", graphql_endpoint, methods=["POST"]),
        Route("/graphql/", graphql_endpoint, methods=["POST"]),
        Route("/healthz", _healthz),
        Route("/_sim/state", control(_state), methods=["GET"]),
        Route("/_sim/deals", control(_create_deal), methods=["POST"]),
        Route("/_sim/deals/{deal_id}", control(_update_deal), methods=["POST"]),
        Route("/_sim/deals/{deal_id}/stage", control(_move_deal), methods=["POST"]),
        Route("/_sim/deals/{deal_id}/owner", control(_set_owner), methods=["POST"]),
        Route(
            "/_sim/deals/{deal_id}/due-date", control(_set_due_date), methods=["POST"]
        ),
        Route("/_sim/deals/{deal_id}/status", control(_set_status), methods=["POST"]),
        Route("/_sim/deals/{deal_id}/notes", control(_add_note), methods=["POST"]),
        Route(
            "/_sim/deals/{deal_id}/attachments",
            control(_add_attachment),
            methods=["POST"],
        ),
        Route(
            "/_sim/deals/{deal_id}/required-documents",
            control(_require_document),
            methods=["POST"],
        ),
        Route("/_sim/notes/{note_id}", control(_update_note), methods=["POST"]),
        Route("/_sim/contacts", control(_create_contact), methods=["POST"]),
        Route(
            "/_sim/contacts/{contact_id}", control(_update_contact), methods=["POST"]
        ),
        Route("/_sim/faults", control(_faults), methods=["GET", "POST"]),
        Route("/_sim/requests", control(_requests), methods=["GET"]),
        Route("/_sim/webhooks", control(_webhooks), methods=["GET"]),
        Route("/_sim/flush", control(_flush), methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# -- GraphQL -------------------------------------------------------------------


async def _graphql(simulator: SalesTrekkerSimulator, request: Request) -> Response:
    try:
        body = json.loads(await request.body())
        query, variables, operation_name = _graphql_request(body)
        document = simulator.documents.parse(query)
    except (ValueError, GraphQLError) as error:
        simulator.requests["<invalid>"] += 1
        code = "GRAPHQL_PARSE_FAILED" if isinstance(error, GraphQLError) else None
        return _errors(400, [_error(error, code)])

    operation = get_operation_ast(document, operation_name)
    simulator.requests[_operation_label(operation)] += 1

    if simulator.faults.latency:
        await asyncio.sleep(simulator.faults.latency)
    if simulator.injected_failure():
        headers = {}
        if simulator.faults.retry_after is not None:
            headers["Retry-After"] = f"{simulator.faults.retry_after:g}"
        return PlainTextResponse(
            "simulated failure",
            status_code=simulator.faults.failure_status,
            headers=headers,
        )

    user_id = None
    if not _authenticates_only(operation):
        claims = _session(simulator, request)
        if claims is None:
            return JSONResponse(EXPIRED_TOKEN_BODY, status_code=401)
        user_id = claims["id"]

    schema = simulator.schema
    errors = simulator.documents.validate(schema, query, document)
    if errors:
        return _errors(400, [_error(e, "GRAPHQL_VALIDATION_FAILED") for e in errors])
    result = execute_sync(
        schema,
        document,
        root_value=simulator.resolvers,
        context_value=RequestContext(user_id=user_id),
        variable_values=variables,
        operation_name=operation_name,
    )
    return JSONResponse(result.formatted)


class DocumentCache:
    """Parsed and validated queries by their text, as GraphQL servers keep them.

    A client sends the same few queries over and over; parsing and
    validating each again would make the simulator, not the code under
    test, the cost in a benchmark. The schema can change (drift tests), so
    validations are kept per schema.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._parsed: dict[str, DocumentNode] = {}
        self._checked: dict[str, list[GraphQLError]] = {}
        self._checked_against: GraphQLSchema | None = None

    def parse(self, query: str) -> DocumentNode:
        document = self._parsed.get(query)
        if document is None:
            document = parse(query)
            if len(self._parsed) >= self._size:
                self._parsed.clear()
            self._parsed[query] = document
        return document

    def validate(
        self, schema: GraphQLSchema, query: str, document: DocumentNode
    ) -> list[GraphQLError]:
        if schema is not self._checked_against:
            self._checked.clear()
            self._checked_against = schema
        errors = self._checked.get(query)
        if errors is None:
            errors = validate(schema, document)
            if len(self._checked) >= self._size:
                self._checked.clear()
            self._checked[query] = errors
        return errors


def _graphql_request(body: object) -> tuple[str, dict[str, Any], str | None]:
    if not isinstance(body, dict) or not isinstance(body.get("query"), str):
        raise ValueError("the body must be a JSON object with a query string")
    variables = body.get("variables") or {}
    if isinstance(variables, str):
        # Seen? once (S7): variables sent as a JSON string.
        variables = json.loads(variables)
    if not isinstance(variables, dict):
        raise ValueError("variables must be a JSON object")
    operation_name = body.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise ValueError("operationName must be a string")
    return body["query"], variables, operation_name


def _operation_label(operation: OperationDefinitionNode | None) -> str:
    """The name a request is counted under: the operation's, or its first field."""
    if operation is None:
        return "<unknown>"
    if operation.name is not None:
        return operation.name.value
    for selection in operation.selection_set.selections:
        name = getattr(selection, "name", None)
        if name is not None:
            return str(name.value)
    return "<anonymous>"


def _authenticates_only(operation: OperationDefinitionNode | None) -> bool:
    if operation is None or operation.operation != OperationType.MUTATION:
        return False
    names = {
        getattr(getattr(selection, "name", None), "value", None)
        for selection in operation.selection_set.selections
    }
    return names <= {"authenticate", "__typename"}


def _session(
    simulator: SalesTrekkerSimulator, request: Request
) -> dict[str, Any] | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token or simulator.faults.expire_tokens:
        return None
    return simulator.tokens.verify(token.strip())


def _error(error: Exception, code: str | None) -> dict[str, Any]:
    formatted: dict[str, Any] = (
        dict(error.formatted)
        if isinstance(error, GraphQLError)
        else {"message": str(error)}
    )
    if code is not None:
        formatted["extensions"] = {**(formatted.get("extensions") or {}), "code": code}
    return formatted


def _errors(status: int, errors: list[dict[str, Any]]) -> Response:
    return JSONResponse({"errors": errors}, status_code=status)


# -- control API ---------------------------------------------------------------

Change = Callable[["SalesTrekkerSimulator", Request, dict[str, Any]], Awaitable[Any]]


async def _control(
    simulator: SalesTrekkerSimulator, request: Request, change: Change
) -> Response:
    try:
        body = await _json_body(request)
        answer = await change(simulator, request, body)
    except UnknownRecord as error:
        return JSONResponse({"error": str(error)}, status_code=404)
    except (SimulatorError, ValueError, KeyError, TypeError) as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        return JSONResponse({"error": detail}, status_code=400)
    if isinstance(answer, Response):
        return answer
    created = isinstance(answer, dict) and "id" in answer
    return JSONResponse(answer, status_code=201 if created else 200)


async def _json_body(request: Request) -> dict[str, Any]:
    if request.method != "POST":
        return {}
    raw = await request.body()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _text(body: dict[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    return _text(body, name) if body.get(name) is not None else None


def _due_date(value: object) -> date | datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        if len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(value)
    raise ValueError("dueDate must be an ISO date, a date-time or epoch ms")


async def _state(sim: SalesTrekkerSimulator, _r: Request, _b: dict[str, Any]) -> Any:
    state = sim.state
    return {
        "organisation": state.organisation,
        "users": list(state.users.values()),
        "workflows": list(state.workflows.values()),
        "labels": list(state.labels.values()),
        "deals": list(state.tickets.values()),
        "contacts": list(state.contacts.values()),
        "notes": list(state.notes.values()),
        "attachments": state.attachments,
        "required_documents": state.required_documents,
    }


async def _create_deal(
    sim: SalesTrekkerSimulator, _r: Request, body: dict[str, Any]
) -> Any:
    labels = body.get("labels") or []
    if not isinstance(labels, list):
        raise ValueError("labels must be a list of label names")
    value = body.get("value")
    deal_id = await sim.create_deal(
        _text(body, "name"),
        stage=_optional_text(body, "stage"),
        workflow_id=_optional_text(body, "workflow"),
        owner=_optional_text(body, "owner"),
        contact_id=_optional_text(body, "contact"),
        value=float(value) if value is not None else None,
        due_date=_due_date(body.get("dueDate")),
        labels=tuple(str(label) for label in labels),
    )
    return {"id": deal_id, "events": ["dealCreated"]}


async def _update_deal(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    events = await sim.update_deal(request.path_params["deal_id"], **body)
    return {"events": events}


async def _move_deal(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    deal_id = request.path_params["deal_id"]
    return {"events": await sim.move_deal(deal_id, _text(body, "stage"))}


async def _set_owner(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    deal_id = request.path_params["deal_id"]
    return {"events": await sim.set_owner(deal_id, _text(body, "owner"))}


async def _set_due_date(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    deal_id = request.path_params["deal_id"]
    due_date = _due_date(body["dueDate"])
    return {"events": await sim.set_due_date(deal_id, due_date)}


async def _set_status(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    deal_id = request.path_params["deal_id"]
    return {"events": await sim.set_status(deal_id, _text(body, "status"))}


async def _add_note(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    note_id = await sim.add_note(
        request.path_params["deal_id"],
        _text(body, "content"),
        owner=_optional_text(body, "owner"),
    )
    return {"id": note_id, "events": ["noteCreated"]}


async def _add_attachment(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    deal_id = request.path_params["deal_id"]
    return {"events": await sim.add_attachment(deal_id, _text(body, "name"))}


async def _require_document(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    deal_id = request.path_params["deal_id"]
    return {"events": await sim.require_document(deal_id, _text(body, "name"))}


async def _update_note(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    note_id = request.path_params["note_id"]
    return {"events": await sim.update_note(note_id, _text(body, "content"))}


async def _create_contact(
    sim: SalesTrekkerSimulator, _r: Request, body: dict[str, Any]
) -> Any:
    contact_id = await sim.create_contact(
        _text(body, "firstName"),
        _text(body, "familyName"),
        email=_optional_text(body, "email"),
        phone=_optional_text(body, "phone"),
        owner=_optional_text(body, "owner"),
    )
    return {"id": contact_id, "events": ["contactCreated"]}


async def _update_contact(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    events = await sim.update_contact(
        request.path_params["contact_id"],
        first_name=_optional_text(body, "firstName"),
        family_name=_optional_text(body, "familyName"),
        email=_optional_text(body, "email"),
        phone=_optional_text(body, "phone"),
    )
    return {"events": events}


_FAULT_FIELDS = {
    "latency": float,
    "failure_rate": float,
    "fail_next": int,
    "failure_status": int,
    "expire_tokens": bool,
}


async def _faults(
    sim: SalesTrekkerSimulator, request: Request, body: dict[str, Any]
) -> Any:
    if request.method == "POST":
        _apply_faults(sim, body)
    return {**sim.faults.as_dict(), "removed_fields": sim.removed_fields}


def _apply_faults(sim: SalesTrekkerSimulator, body: dict[str, Any]) -> None:
    unknown = set(body) - {
        *_FAULT_FIELDS,
        "retry_after",
        "revoke_tokens",
        "remove_fields",
        "restore_schema",
    }
    if unknown:
        raise ValueError(f"unknown fault {', '.join(sorted(unknown))}")
    if body.get("restore_schema"):
        sim.restore_schema()
    for qualified in body.get("remove_fields") or []:
        type_name, _, field = str(qualified).partition(".")
        sim.remove_field(type_name, field)
    if body.get("revoke_tokens"):
        sim.revoke_tokens()

    before = sim.faults.as_dict()
    for name, kind in _FAULT_FIELDS.items():
        if name in body:
            setattr(sim.faults, name, kind(body[name]))
    if "retry_after" in body:
        value = body["retry_after"]
        sim.faults.retry_after = float(value) if value is not None else None
    try:
        sim.faults.check()
    except SimulatorError:
        for name, value in before.items():
            setattr(sim.faults, name, value)
        raise


async def _requests(sim: SalesTrekkerSimulator, _r: Request, _b: dict[str, Any]) -> Any:
    return dict(sim.requests)


async def _webhooks(sim: SalesTrekkerSimulator, _r: Request, _b: dict[str, Any]) -> Any:
    return [
        {**asdict(sent), "sent_at": sent.sent_at.isoformat()}
        for sent in sim.sent_webhooks
    ]


async def _flush(sim: SalesTrekkerSimulator, _r: Request, _b: dict[str, Any]) -> Any:
    await sim.flush()
    return {"webhooks": len(sim.sent_webhooks)}
