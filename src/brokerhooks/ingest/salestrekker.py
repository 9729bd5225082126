"""``POST /hooks/salestrekker``: the endpoint SalesTrekker calls.

The order of checks, each with its answer:

1. method other than POST                        405
2. address in cool-down after failed keys        429 (Retry-After)
3. missing, malformed or unknown key             401 (one body for all three)
4. content type other than JSON                  415
5. body over ``max_body_bytes``                  413
6. body not a JSON object, bad ``event``/``id``  400 with the reason
7. store unreachable                             503, so SalesTrekker retries
8. stored                                        200 {"status": "accepted", ...}

The key is checked before the body is parsed, so strangers learn nothing
about the payload rules. Every delivery, accepted or not, leaves a
``deliveries`` row (size and SHA-256 of the body, never the key) and one
log line. This is a raw ASGI route on purpose: it is the hot path.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from brokerhooks.errors import StoreUnavailable
from brokerhooks.ingest.auth import parse_authorization
from brokerhooks.ingest.salestrekker_events import canonical_event_name, subject_of
from brokerhooks.metrics import SourceMetrics
from brokerhooks.runtime import Runtime
from brokerhooks.store.brokers import BrokerKey
from brokerhooks.store.events import accepted_event_write, delivery_write
from brokerhooks.store.models import RECEIVED, UNSUPPORTED
from brokerhooks.store.queue import ordering_key
from brokerhooks.store.types import utcnow, uuid7

log = structlog.get_logger("brokerhooks.ingest")

SOURCE = "salestrekker"
# The form ``str(uuid.UUID(...))`` gives; anything else goes through uuid.UUID.
_CANONICAL_UUID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
UNAUTHORIZED_BODY = {
    "error": "unauthorized",
    "detail": "send the broker's SalesTrekker API key as "
    "'Authorization: Salestrekker <key>'",
}


class Rejection(Exception):
    """A delivery refused with ``status``; ``reason`` goes to the record."""

    def __init__(
        self,
        status: int,
        outcome: str,
        reason: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason
        self.headers = headers

    def response(self) -> Response:
        if self.status == 401:
            body: dict[str, Any] = UNAUTHORIZED_BODY
        else:
            body = {"error": self.outcome, "detail": self.reason}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass(slots=True)
class Body:
    data: bytes
    size: int
    complete: bool

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.data).hexdigest() if self.complete else None


class Endpoint:
    """The route as a plain ASGI app, built once per app.

    Starlette's request and response objects are left out on purpose: the
    few headers needed are read from the scope, and an accepted delivery's
    answer is written directly. The logger is bound when the endpoint is
    built, so logging must be configured before the app is (``brokerhooks
    serve`` and the tests do).
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._metrics = SourceMetrics(runtime.metrics, SOURCE)
        self._log = log.bind()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Accept one SalesTrekker delivery."""
        runtime = self._runtime
        started = time.perf_counter()
        client = scope.get("client")
        address: str | None = client[0] if client else None
        delivery: dict[str, Any] = {
            "id": uuid7(),
            "source": SOURCE,
            "received_at": utcnow(),
            "client_address": address,
            "broker_id": None,
            "event_id": None,
            "body_size": 0,
            "body_sha256": None,
        }
        # The first of each header, as Starlette's Headers.get() finds it.
        headers: dict[bytes, bytes] = dict(reversed(scope["headers"]))
        broker: BrokerKey | None = None
        try:
            body = await _read_body(receive, headers, runtime.settings.max_body_bytes)
            delivery["body_size"] = body.size
            delivery["body_sha256"] = body.sha256
            broker = await _check(scope["method"], headers, runtime, address, body)
            delivery["broker_id"] = broker.id
            event = _parse(body)
            answer = await _store(runtime, broker, event, delivery)
            status = 200
            self._metrics.delivered("accepted")
        except Rejection as rejection:
            answer = rejection.response()
            status = rejection.status
            _record(runtime, delivery, rejection)
            self._metrics.delivered(rejection.outcome)

        elapsed = time.perf_counter() - started
        self._metrics.latency.observe(elapsed)
        self._log.info(
            "delivery",
            source=SOURCE,
            delivery=delivery["id"],
            outcome=delivery["outcome"],
            status=status,
            reason=delivery["reason"],
            broker=broker.name if broker else None,
            client=address,
            size=delivery["body_size"],
            sha256=delivery["body_sha256"],
            event_id=delivery["event_id"],
            ms=round(elapsed * 1000, 2),
        )
        if isinstance(answer, Response):
            await answer(scope, receive, send)
        else:
            await _send_json(send, answer)


async def _send_json(send: Send, body: bytes) -> None:
    """Answer 200 with ``body`` and the headers JSONResponse would send."""
    headers = [
        (b"content-length", b"%d" % len(body)),
        (b"content-type", b"application/json"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> Body:
    """Read at most ``limit + 1`` bytes; remember the size that was sent."""
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > limit:
        return Body(b"", int(declared), complete=False)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return Body(b"", size, complete=False)
        more = message.get("more_body", False)
    return Body(chunks[0] if len(chunks) == 1 else b"".join(chunks), size, True)


async def _check(
    method: str,
    headers: dict[bytes, bytes],
    runtime: Runtime,
    address: str | None,
    body: Body,
) -> BrokerKey:
    """Steps 1 to 5 of the module docstring; return the broker."""
    if method != "POST":
        raise Rejection(
            405,
            "method_not_allowed",
            f"{method} is not accepted here; SalesTrekker sends POST",
            {"Allow": "POST"},
        )

    throttle_key = address or "unknown"
    wait = runtime.throttle.retry_after(throttle_key)
    if wait > 0:
        raise Rejection(
            429,
            "throttled",
            "too many failed keys from this address; try again later",
            {"Retry-After": str(int(wait) + 1)},
        )

    authorization = headers.get(b"authorization")
    key = parse_authorization(
        authorization.decode("latin-1") if authorization is not None else None
    )
    broker = await _find_broker(runtime, key) if key is not None else None
    if broker is None:
        runtime.throttle.failed(throttle_key)
        reason = "no key" if key is None else "unknown key"
        if key is None and authorization is not None:
            reason = "malformed Authorization header"
        raise Rejection(401, "unauthorized", reason)
    if runtime.throttle.has_failed(throttle_key):
        await runtime.throttle.record_success(throttle_key)

    content_type = headers.get(b"content-type", b"").decode("latin-1")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Rejection(
            415,
            "unsupported_media_type",
            f"content type {content_type or '(none)'!r} is not JSON; "
            "send application/json",
        )

    if not body.complete:
        raise Rejection(
            413,
            "too_large",
            f"body of {body.size} bytes is over the limit of "
            f"{runtime.settings.max_body_bytes} (BROKERHOOKS_MAX_BODY_BYTES)",
        )
    return broker


async def _find_broker(runtime: Runtime, key: Any) -> BrokerKey | None:
    try:
        return await runtime.directory.find(key)
    except StoreUnavailable as error:
        raise Rejection(503, "store_unavailable", str(error)) from None


@dataclass(slots=True)
class ParsedEvent:
    type: str
    supported: bool
    entity_id: str
    deal_id: str | None
    text: str


def _parse(body: Body) -> ParsedEvent:
    """Step 6: the body must be a JSON object with a valid event and ids."""
    try:
        text = body.data.decode()
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError) as error:
        raise Rejection(
            400, "bad_request", f"body is not valid JSON: {error}"
        ) from None
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise Rejection(400, "bad_request", f"body must be a JSON object, not {kind}")

    name = document.get("event")
    if not isinstance(name, str) or not name.strip():
        raise Rejection(400, "bad_request", "'event' must be a non-empty string")
    entity_id = _uuid(document, "id")
    if entity_id is None:
        raise Rejection(400, "bad_request", "'id' is required")
    deal_id = _uuid(document, "idDeal")

    canonical = canonical_event_name(name)
    subject = subject_of(canonical) if canonical else None
    if subject == "note" and deal_id is None:
        raise Rejection(400, "bad_request", f"'idDeal' is required for {canonical}")
    if subject == "deal":
        deal_id = entity_id
    return ParsedEvent(
        type=canonical or name.strip()[:100],
        supported=canonical is not None,
        entity_id=entity_id,
        deal_id=deal_id,
        text=text,
    )


def _uuid(document: dict[str, Any], field: str) -> str | None:
    value = document.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Rejection(400, "bad_request", f"{field!r} must be a UUID string")
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Rejection(
            400, "bad_request", f"{field!r} is not a UUID: {value[:60]!r}"
        ) from None


async def _store(
    runtime: Runtime,
    broker: BrokerKey,
    parsed: ParsedEvent,
    delivery: dict[str, Any],
) -> bytes | Response:
    """Steps 7 and 8: commit the event with its delivery, then answer.

    The usual answer is returned as the JSON body JSONResponse would
    render; the rarer one with a warning as a response.
    """
    event_id = uuid7()
    status = RECEIVED if parsed.supported else UNSUPPORTED
    event = {
        "id": event_id,
        "broker_id": broker.id,
        "source": SOURCE,
        "type": parsed.type,
        "entity_id": parsed.entity_id,
        "deal_id": parsed.deal_id,
        "status": status,
        "payload": parsed.text,
        "received_at": delivery["received_at"],
        "delivery_id": delivery["id"],
    }
    reason = None if parsed.supported else f"unsupported event {parsed.type!r}"
    delivery.update(
        status_code=200, outcome="accepted", reason=reason, event_id=event_id
    )
    try:
        await runtime.writer.write(
            accepted_event_write(
                event,
                delivery,
                ordering_key=ordering_key(broker.id, parsed.entity_id, parsed.deal_id),
            )
        )
    except StoreUnavailable as error:
        delivery["event_id"] = None
        raise Rejection(503, "store_unavailable", str(error)) from None

    if parsed.supported:
        return f'{{"status":"accepted","event":"{event_id}"}}'.encode()
    warning = (
        f"{parsed.type!r} is not a known SalesTrekker event; stored as unsupported"
    )
    return JSONResponse({"status": "accepted", "event": event_id, "warning": warning})


def _record(runtime: Runtime, delivery: dict[str, Any], rejection: Rejection) -> None:
    """Keep the delivery record of a rejection (not awaited: nothing to ack)."""
    delivery.update(
        status_code=rejection.status,
        outcome=rejection.outcome,
        reason=rejection.reason,
    )
    if rejection.status != 503:
        runtime.writer.write_later(delivery_write(delivery))
