"""The SalesTrekker GraphQL client: one broker's tenant, seen from brokerhooks.

Every call goes to ``{base_url}/graphql`` with the broker's session token.
The token comes from a ``TokenStore``; when it is missing or expires within
an hour, the client trades the API key for a new one (``authenticate``).

How answers become errors (the SalesTrekker side of each is a GUESS: no
public source shows an error from its API):

====================================================  ======================
answer                                                raised
====================================================  ======================
timeout, connection failure                           TransientError
HTTP 429, HTTP 5xx (``Retry-After`` kept)             TransientError
HTTP 401/403, or a GraphQL error about the token      re-authenticate once
                                                      and retry the call once
the same on ``authenticate`` (or no token in it)      ApiKeyRejectedError
GraphQL validation error, HTTP 404/410                SchemaMismatchError
``ticket``/``contact``/``note`` answered null         NotFoundError
GraphQL error that reads as temporary (timeout,       TransientError
"try again", "unavailable", rate limit)
any other GraphQL error or HTTP 4xx                   RequestRejectedError
====================================================  ======================

A deal is read with ``Ticket``, which selects guessed fields. If the tenant
rejects it as a schema mismatch, the client sends ``TicketSeen`` (the
fields the sources show) instead; the guessed fields then read as null,
and that tenant gets ``TicketSeen`` first until the cache's ttl runs out.

Unrecognised GraphQL errors are permanent: retrying an unexplained refusal
rarely helps, and a parked event can be replayed once a person has looked.

No message, log line or repr carries the API key or a token.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, cast

import httpx
import structlog
from graphql import (
    GraphQLError,
    GraphQLSchema,
    IntrospectionQuery,
    build_client_schema,
    get_introspection_query,
)

from brokerhooks import __version__
from brokerhooks.connectors.errors import ConnectorError, TransientError
from brokerhooks.connectors.salestrekker.cache import Label, Workflow, WorkflowCache
from brokerhooks.connectors.salestrekker.errors import (
    ApiKeyRejectedError,
    NotFoundError,
    RequestRejectedError,
    SchemaMismatchError,
)
from brokerhooks.connectors.salestrekker.operations import (
    FALLBACKS,
    dropped_fields,
    operation,
)
from brokerhooks.connectors.salestrekker.ratelimit import RATE_LIMITS, RateLimits
from brokerhooks.connectors.salestrekker.tokens import TokenStore, token_expiry
from brokerhooks.security.redaction import MASK, scrub
from brokerhooks.security.secrets import Secret

log = structlog.get_logger("brokerhooks.salestrekker")

# A token that expires within this margin is replaced before use, so that a
# call never starts with a token about to lapse.
TOKEN_MARGIN = timedelta(hours=1)
MAX_MESSAGE = 300

# Errors about who is calling, not about what they may do: a permission
# error (Apollo's FORBIDDEN) is not cured by a new token.
_AUTH_CODES = frozenset({"UNAUTHENTICATED", "UNAUTHORIZED"})
_AUTH_MESSAGE = re.compile(
    r"unauthori[sz]ed|unauthenticated|not authenticated|authentication required"
    r"|(invalid|expired|missing|bad|malformed) (jwt|token|session)"
    r"|(jwt|token|session) (is )?(invalid|expired|malformed|revoked)"
    r"|jwt expired|invalid signature",
    re.IGNORECASE,
)
_SCHEMA_CODES = frozenset({"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"})
_SCHEMA_MESSAGE = re.compile(
    r"Cannot query field|Unknown argument|Unknown type|Unknown field"
    r"|is not defined by type|is not defined on type|got invalid value"
    r"|argument .* is required|of required type .* was not provided"
    r"|must have a selection of subfields|must not have a selection"
    r"|Variable ['\"]\$\w+['\"] of type|Syntax Error|Unknown operation",
    re.IGNORECASE,
)
_TRANSIENT_CODES = frozenset(
    {"SERVICE_UNAVAILABLE", "TIMEOUT", "RATE_LIMITED", "TOO_MANY_REQUESTS"}
)
_TRANSIENT_MESSAGE = re.compile(
    r"time(d)? ?out|temporar|try again|unavailable|too many requests|rate limit"
    r"|deadlock|connection (reset|refused|closed)|ECONNRESET|ECONNREFUSED"
    r"|ETIMEDOUT",
    re.IGNORECASE,
)


class _TokenRefused(Exception):
    """The API refused the session token (expired, revoked or malformed)."""


class SalesTrekkerClient:
    """Reads deals, contacts and notes of one broker, and writes notes.

    ``workflow_cache`` is shared between clients to share fetched workflows
    and labels; without one, the client keeps its own for 300 seconds.
    ``rate_limits`` defaults to the process-wide buckets, so that every
    client of a broker draws from one budget of ``rate_per_second``.
    ``broker_name`` only makes messages name the command to run. An
    injected ``transport`` may be shared by several clients: it is the
    caller's to close.
    """

    def __init__(
        self,
        *,
        broker_id: str,
        base_url: str,
        api_key: Secret,
        tokens: TokenStore,
        timeout: float = 15.0,
        rate_per_second: float = 10.0,
        workflow_cache: WorkflowCache | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        broker_name: str | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be more than 0, got {timeout}")
        self.broker_id = broker_id
        self.broker_name = broker_name
        self.endpoint = base_url.rstrip("/") + "/graphql"
        self._api_key = api_key
        self._tokens = tokens
        self._timeout = timeout
        self._cache = workflow_cache if workflow_cache is not None else WorkflowCache()
        self._bucket = (rate_limits or RATE_LIMITS).bucket(broker_id, rate_per_second)
        self._owns_transport = transport is None
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={
                "Accept": "application/json",
                "User-Agent": f"brokerhooks/{__version__}",
            },
        )
        self._lock = asyncio.Lock()
        self._token: tuple[Secret, datetime] | None = None
        self._token_loaded = False

    def __repr__(self) -> str:
        return f"SalesTrekkerClient(broker_id={self.broker_id!r}, {self.endpoint!r})"

    async def __aenter__(self) -> SalesTrekkerClient:
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_transport:
            await self._http.aclose()

    # -- reads -------------------------------------------------------------

    async def fetch_deal(self, deal_id: str) -> dict[str, Any]:
        """The deal (``ticket``) with its workflow, stage and labels named.

        The result holds the ``ticket`` fields as the schema spells them,
        plus ``workflow`` and ``stage`` (``{"id", "name"}`` or None) and
        ``labels`` (a list of ``{"id", "name"}``). A name SalesTrekker does
        not know is None. Raises NotFoundError if there is no such deal.
        """
        data = await self._call_with_fallback("Ticket", {"id": deal_id})
        ticket = self._entity(data, "ticket", "deal", deal_id)

        deal = dict(ticket)
        for field in dropped_fields("Ticket"):
            deal.setdefault(field, None)
        deal["workflow"], deal["stage"] = await self._workflow_and_stage(
            ticket.get("idWorkflow"), ticket.get("idStage")
        )
        deal["labels"] = await self._named_labels(ticket.get("idLabels") or [])
        return deal

    async def fetch_contact(self, contact_id: str) -> dict[str, Any]:
        """The contact; NotFoundError if there is none."""
        data = await self._call("Contact", {"id": contact_id})
        return self._entity(data, "contact", "contact", contact_id)

    async def fetch_note(self, note_id: str) -> dict[str, Any]:
        """The note; NotFoundError if there is none.

        ``note(id)`` is a GUESS: if the live API lacks it, SchemaMismatchError.
        """
        data = await self._call("Note", {"id": note_id})
        return self._entity(data, "note", "note", note_id)

    async def introspect(self) -> GraphQLSchema:
        """The schema the broker's tenant serves now, from introspection."""
        data = await self._call("IntrospectionQuery", None, get_introspection_query())
        try:
            return build_client_schema(cast(IntrospectionQuery, data))
        except (GraphQLError, TypeError, KeyError, ValueError) as error:
            raise RequestRejectedError(
                f"SalesTrekker's introspection answer for broker {self._broker} is "
                f"not a usable schema: {self._clean(str(error))}"
            ) from None

    # -- writes ------------------------------------------------------------

    async def create_note(
        self, deal_id: str, content: str, *, owner_id: str | None = None
    ) -> str:
        """Write a note on the deal; return the new note's id.

        Not idempotent: after a TransientError the note may exist. Callers
        that retry must record the attempt first (the action ledger does).
        """
        note: dict[str, Any] = {
            "idTicket": deal_id,
            "content": content,
            "isActive": True,
            "type": {"name": "comment"},
        }
        if owner_id is not None:
            note["idOwner"] = owner_id
        data = await self._call("NoteCreate", {"note": note})

        note_id = data.get("noteCreate")
        if not isinstance(note_id, str | int) or not str(note_id):
            raise RequestRejectedError(
                f"SalesTrekker answered noteCreate on deal {deal_id} without a "
                "note id; check the deal in SalesTrekker before replaying"
            )
        return str(note_id)

    # -- workflows and labels ----------------------------------------------

    async def _workflow_and_stage(
        self, workflow_id: str | None, stage_id: str | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        unnamed_stage = {"id": stage_id, "name": None} if stage_id else None
        if not workflow_id:
            return None, unnamed_stage

        workflow, fetched = await self._workflow(workflow_id, refresh=False)
        stage = _by_id(workflow.get("stages") if workflow else None, stage_id)
        if stage_id and stage is None and not fetched:
            # A stage added since the workflow was cached.
            workflow, _ = await self._workflow(workflow_id, refresh=True)
            stage = _by_id(workflow.get("stages") if workflow else None, stage_id)

        if stage_id and stage is None:
            log.warning(
                "salestrekker_stage_unknown",
                broker_id=self.broker_id,
                workflow_id=workflow_id,
                stage_id=stage_id,
            )
        named_workflow = {"id": workflow_id, "name": (workflow or {}).get("name")}
        named_stage = {"id": stage_id, "name": stage.get("name")} if stage else None
        return named_workflow, named_stage or unnamed_stage

    async def _workflow(
        self, workflow_id: str, *, refresh: bool
    ) -> tuple[Workflow | None, bool]:
        """The workflow and whether it was fetched just now."""
        if not refresh:
            cached = self._cache.workflow(self.broker_id, workflow_id)
            if cached is not None:
                return cached, False

        data = await self._call("Workflow", {"id": workflow_id})
        workflow = data.get("workflow")
        if not isinstance(workflow, dict):
            return None, True
        self._cache.put_workflow(self.broker_id, workflow_id, workflow)
        return workflow, True

    async def _named_labels(self, label_ids: list[str]) -> list[dict[str, Any]]:
        if not label_ids:
            return []
        labels, fetched = await self._labels(refresh=False)
        known = {label.get("id") for label in labels}
        if not fetched and any(label_id not in known for label_id in label_ids):
            labels, _ = await self._labels(refresh=True)

        return [
            {"id": label_id, "name": (_by_id(labels, label_id) or {}).get("name")}
            for label_id in label_ids
        ]

    async def _labels(self, *, refresh: bool) -> tuple[list[Label], bool]:
        if not refresh:
            cached = self._cache.labels(self.broker_id)
            if cached is not None:
                return cached, False

        data = await self._call("Labels", {})
        labels = [
            label for label in data.get("labels") or [] if isinstance(label, dict)
        ]
        self._cache.put_labels(self.broker_id, labels)
        return labels, True

    # -- calls and tokens --------------------------------------------------

    async def _call(
        self, name: str, variables: dict[str, Any] | None, query: str | None = None
    ) -> dict[str, Any]:
        """Send a bundled operation (or ``query``) with a session token.

        A refused token is dropped and the call is tried once more with a
        new one.
        """
        text = query if query is not None else operation(name).text
        token = await self._session_token()
        try:
            return await self._post(name, text, variables, token)
        except _TokenRefused:
            pass

        await self._drop_token(token)
        token = await self._session_token()
        try:
            return await self._post(name, text, variables, token)
        except _TokenRefused:
            raise TransientError(
                f"SalesTrekker refused a session token it had just issued to broker "
                f"{self._broker} ({name}); trying again later"
            ) from None

    async def _call_with_fallback(
        self, name: str, variables: dict[str, Any]
    ) -> dict[str, Any]:
        """Send ``name``, or its fallback if the tenant rejects ``name``.

        Only a schema mismatch falls back; the fallback's own mismatch is
        raised as is. A tenant that rejected ``name`` gets the fallback
        straight away for the cache's ttl, then ``name`` is tried again.
        """
        fallback = FALLBACKS[name]
        if self._cache.falls_back(self.broker_id, name):
            return await self._call(fallback, variables)
        try:
            return await self._call(name, variables)
        except SchemaMismatchError as error:
            data = await self._call(fallback, variables)
            self._cache.put_fallback(self.broker_id, name)
            log.warning(
                "salestrekker_fallback",
                broker=self._broker,
                operation=name,
                fallback=fallback,
                null_fields=list(dropped_fields(name)),
                error=str(error),
            )
            return data

    async def _session_token(self) -> Secret:
        async with self._lock:
            if not self._token_loaded:
                self._token = await self._tokens.load(self.broker_id)
                self._token_loaded = True
            if self._token is None or self._token[1] - _now() < TOKEN_MARGIN:
                self._token = await self._authenticate()
            return self._token[0]

    async def _drop_token(self, refused: Secret) -> None:
        async with self._lock:
            # Another call may have replaced the token already.
            if self._token is not None and self._token[0] == refused:
                self._token = None
                await self._tokens.discard(self.broker_id)

    async def _authenticate(self) -> tuple[Secret, datetime]:
        variables = {"apiKey": self._api_key.reveal()}
        data = await self._post(
            "Authenticate", operation("Authenticate").text, variables, None
        )
        result = data.get("authenticate")
        value = result.get("token") if isinstance(result, dict) else None
        if not isinstance(value, str) or not value:
            raise self._key_rejected("authenticate answered no token")

        token = Secret(value)
        expires_at = token_expiry(token, _now())
        await self._tokens.save(self.broker_id, token, expires_at)
        log.info(
            "salestrekker_authenticated",
            broker_id=self.broker_id,
            expires_at=expires_at.isoformat(),
        )
        return token, expires_at

    async def _post(
        self,
        name: str,
        query: str,
        variables: dict[str, Any] | None,
        token: Secret | None,
    ) -> dict[str, Any]:
        """One HTTP request; the ``data`` of its answer, or an error."""
        await self._bucket.acquire()
        headers = {"Authorization": f"Bearer {token.reveal()}"} if token else {}
        body = {"query": query, "variables": variables or {}, "operationName": name}
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.post(
                    self.endpoint, json=body, headers=headers
                )
        except (TimeoutError, httpx.TimeoutException):
            self._log_failure(name, None, started, "timeout")
            raise TransientError(
                f"SalesTrekker did not answer {name} within {self._timeout:g} s "
                f"(broker {self._broker})"
            ) from None
        except httpx.TransportError as error:
            self._log_failure(name, None, started, type(error).__name__)
            raise TransientError(
                f"could not reach SalesTrekker at {self.endpoint} for {name}: "
                f"{self._clean(str(error)) or type(error).__name__}"
            ) from None

        try:
            return self._read(name, response, authenticating=token is None)
        except (ConnectorError, _TokenRefused) as error:
            reason = (
                "token_refused"
                if isinstance(error, _TokenRefused)
                else type(error).__name__
            )
            self._log_failure(name, response.status_code, started, reason)
            raise

    def _read(
        self, name: str, response: httpx.Response, *, authenticating: bool
    ) -> dict[str, Any]:
        status = response.status_code
        if status in (401, 403):
            if authenticating:
                raise self._key_rejected(f"HTTP {status}")
            raise _TokenRefused
        if status == 429 or status >= 500:
            raise TransientError(
                f"SalesTrekker answered {name} with HTTP {status} "
                f"(broker {self._broker})",
                retry_after=_retry_after(response),
            )

        body = _json_object(response)
        errors = body.get("errors") if body is not None else None
        if errors:
            self._raise_for_errors(name, errors, authenticating=authenticating)
        if status in (404, 410):
            raise SchemaMismatchError(
                f"there is no GraphQL API at {self.endpoint} (HTTP {status}). "
                f"{self._mismatch_hint()} If the broker's SalesTrekker address "
                "changed, correct it first."
            )
        if not 200 <= status < 300:
            moved = response.headers.get("Location")
            raise RequestRejectedError(
                f"SalesTrekker answered {name} with HTTP {status}"
                + (f", pointing to {moved}" if moved else "")
                + f" (broker {self._broker})"
            )

        data = body.get("data") if body is not None else None
        if not isinstance(data, dict):
            raise TransientError(
                f"SalesTrekker answered {name} without a GraphQL result "
                f"(HTTP {status}, broker {self._broker})"
            )
        return data

    def _raise_for_errors(
        self, name: str, errors: object, *, authenticating: bool
    ) -> None:
        items = errors if isinstance(errors, list) else [errors]
        kinds = {_error_kind(item) for item in items}
        described = "; ".join(self._clean(_message(item)) for item in items)

        if "auth" in kinds:
            if authenticating:
                raise self._key_rejected(described)
            raise _TokenRefused
        if "schema" in kinds:
            raise SchemaMismatchError(
                f"SalesTrekker's API no longer fits the schema brokerhooks "
                f"bundles: it rejected {name} ({described}). {self._mismatch_hint()}"
            )
        if kinds == {"transient"}:
            raise TransientError(f"SalesTrekker could not answer {name}: {described}")
        if authenticating:
            raise self._key_rejected(described)
        raise RequestRejectedError(f"SalesTrekker refused {name}: {described}")

    def _entity(
        self, data: dict[str, Any], field: str, entity: str, entity_id: str
    ) -> dict[str, Any]:
        value = data.get(field)
        if value is None:
            raise NotFoundError(
                f"SalesTrekker has no {entity} {entity_id} for broker "
                f"{self._broker}; it may have been deleted",
                entity=entity,
                entity_id=entity_id,
            )
        if not isinstance(value, dict):
            raise RequestRejectedError(
                f"SalesTrekker answered {field} {entity_id} with a "
                f"{type(value).__name__}, not an object"
            )
        return value

    # -- messages ----------------------------------------------------------

    @property
    def _broker(self) -> str:
        return self.broker_name or self.broker_id

    def _key_rejected(self, detail: str) -> ApiKeyRejectedError:
        name = self.broker_name or "NAME"
        return ApiKeyRejectedError(
            f"SalesTrekker refused the API key of broker {self._broker} "
            f"({self._clean(detail)}). Get a new API key from SalesTrekker and "
            f"store it with `brokerhooks brokers rotate-key {name}`, then replay "
            "the broker's parked events."
        )

    def _mismatch_hint(self) -> str:
        name = self.broker_name or "NAME"
        return (
            f"Run `brokerhooks salestrekker check --broker {name}` to see what "
            "changed, and replay the event after upgrading brokerhooks."
        )

    def _clean(self, text: str) -> str:
        """``text`` without the key or token, shortened for a message."""
        for secret in (self._api_key, self._token[0] if self._token else None):
            if secret:
                text = text.replace(secret.reveal(), MASK)
        text = scrub(" ".join(text.split()))
        return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"

    def _log_failure(
        self, name: str, status: int | None, started: float, reason: str
    ) -> None:
        log.warning(
            "salestrekker_request_failed",
            broker_id=self.broker_id,
            operation=name,
            status=status,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            reason=reason,
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _by_id(items: object, item_id: str | None) -> dict[str, Any] | None:
    if item_id is None or not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("id") == item_id:
            return item
    return None


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _message(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)


def _error_kind(error: object) -> str:
    """auth, schema, transient or other: how to read one GraphQL error."""
    code = ""
    if isinstance(error, dict) and isinstance(error.get("extensions"), dict):
        code = str(error["extensions"].get("code", "")).upper()
    message = _message(error)
    if code in _AUTH_CODES or _AUTH_MESSAGE.search(message):
        return "auth"
    if code in _SCHEMA_CODES or _SCHEMA_MESSAGE.search(message):
        return "schema"
    if code in _TRANSIENT_CODES or _TRANSIENT_MESSAGE.search(message):
        return "transient"
    return "other"


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or a date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - _now()).total_seconds())
