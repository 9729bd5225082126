"""The simulator's GraphQL side: schema served, session tokens, resolvers.

The schema served is the client's bundled ``schema.graphql``, less any
fields removed by fault injection, so that a removed field fails validation
and disappears from introspection as it would on a changed server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar, cast

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    InputObjectTypeDefinitionNode,
    InputObjectTypeExtensionNode,
    ObjectTypeDefinitionNode,
    ObjectTypeExtensionNode,
    build_ast_schema,
    parse,
    validate_schema,
)

from brokerhooks.connectors.salestrekker.operations import bundled_schema, schema_sdl
from brokerhooks.simulators.salestrekker import seed
from brokerhooks.simulators.salestrekker.state import SimulatorError, SimulatorState
from brokerhooks.simulators.salestrekker.webhooks import Webhook

T = TypeVar("T")

_TYPE_NODES = (
    ObjectTypeDefinitionNode,
    ObjectTypeExtensionNode,
    InputObjectTypeDefinitionNode,
    InputObjectTypeExtensionNode,
)


def served_schema(removed: Iterable[tuple[str, str]]) -> GraphQLSchema:
    """The bundled schema without the ``(type, field)`` pairs in ``removed``.

    Raises ValueError if a pair does not name a field of the bundled schema
    or if the schema left over is not valid.
    """
    removed = set(removed)
    if not removed:
        return bundled_schema()
    document = parse(schema_sdl())
    found: set[tuple[str, str]] = set()
    definitions = []
    for definition in document.definitions:
        if isinstance(definition, _TYPE_NODES):
            type_name = definition.name.value
            fields = tuple(
                field
                for field in definition.fields or ()
                if (type_name, field.name.value) not in removed
            )
            found |= {
                (type_name, field.name.value)
                for field in definition.fields or ()
                if (type_name, field.name.value) in removed
            }
            if not fields and definition.kind.endswith("extension"):
                continue
            definition = replace(cast(Any, definition), fields=fields)
        definitions.append(definition)

    missing = sorted(removed - found)
    if missing:
        names = ", ".join(f"{type_name}.{field}" for type_name, field in missing)
        raise ValueError(f"the bundled schema has no field {names}")
    schema = build_ast_schema(DocumentNode(definitions=tuple(definitions)))
    errors = validate_schema(schema)
    if errors:
        raise ValueError("; ".join(error.message for error in errors))
    return schema


class TokenIssuer:
    """Issues and checks session tokens shaped like SalesTrekker's.

    A token is an HS256 JWT with the claims seen in public tokens: ``id``
    (the user), ``idCurrentOrganization``, ``iat`` and ``exp``. Signed with a
    key of this simulator only.
    """

    def __init__(
        self, lifetime: timedelta, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._key = secrets.token_bytes(32)

    def issue(self, user_id: str, organisation_id: str) -> str:
        now = int(self._clock())
        claims = {
            "id": user_id,
            "idCurrentOrganization": organisation_id,
            "iat": now,
            "exp": now + int(self.lifetime.total_seconds()),
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims).encode())
        return f"{header}.{payload}.{self._sign(f'{header}.{payload}')}"

    def verify(self, token: str) -> dict[str, Any] | None:
        """The token's claims if it is ours, unexpired and not revoked."""
        parts = token.split(".")
        if len(parts) != 3 or not hmac.compare_digest(
            self._sign(f"{parts[0]}.{parts[1]}").encode(), parts[2].encode()
        ):
            return None
        claims: dict[str, Any] = json.loads(_unb64(parts[1]))
        if claims["exp"] <= self._clock():
            return None
        return claims

    def revoke_all(self) -> None:
        """Treat every token issued so far as expired.

        Done by changing the signing key: a token issued again within the
        same second then differs from the revoked one.
        """
        self._key = secrets.token_bytes(32)

    def _sign(self, signed: str) -> str:
        return _b64(hmac.new(self._key, signed.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who sent the request: the user of the session token, if any."""

    user_id: str | None


Info = GraphQLResolveInfo[RequestContext]


class Resolvers:
    """The root fields of Query and Mutation, over the simulator's state.

    Each method is found by graphql-core's default resolver under the
    field's name. Refusals are GraphQL errors in the standard envelope with
    HTTP 200 (GUESS: no SalesTrekker error body is public).
    """

    def __init__(
        self,
        state: SimulatorState,
        tokens: TokenIssuer,
        api_key: str,
        emit: Callable[[Sequence[Webhook]], None],
    ) -> None:
        self._state = state
        self._tokens = tokens
        self._api_key = api_key
        self._emit = emit

    # -- queries -------------------------------------------------------------

    def ticket(self, _info: Info, id: str) -> Any:
        return self._state.tickets.get(id)

    def contact(self, _info: Info, id: str) -> Any:
        return self._state.contacts.get(id)

    def contacts(self, _info: Info) -> Any:
        return list(self._state.contacts.values())

    def note(self, _info: Info, id: str) -> Any:
        return self._state.notes.get(id)

    def workflow(self, _info: Info, id: str) -> Any:
        return self._state.workflows.get(id)

    def workflows(self, _info: Info) -> Any:
        return list(self._state.workflows.values())

    def workflowsSearch(self, _info: Info, query: str) -> Any:
        wanted = query.casefold()
        return [
            workflow
            for workflow in self._state.workflows.values()
            if wanted in workflow["name"].casefold()
        ]

    def labels(self, _info: Info) -> Any:
        return list(self._state.labels.values())

    def organizations(self, _info: Info) -> Any:
        organisation = self._state.organisation
        return [
            {"id": organisation["id"], "organization": {"name": organisation["name"]}}
        ]

    # -- mutations -----------------------------------------------------------

    def authenticate(
        self,
        _info: Info,
        apiKey: str | None = None,
        email: str | None = None,
        password: str | None = None,
    ) -> Any:
        # GUESS: how a wrong key is answered. Apollo-style UNAUTHENTICATED.
        if apiKey is None or not hmac.compare_digest(
            apiKey.encode(), self._api_key.encode()
        ):
            raise GraphQLError(
                "Invalid API key" if email is None else "Invalid credentials",
                extensions={"code": "UNAUTHENTICATED"},
            )
        token = self._tokens.issue(seed.OWNER_ID, self._state.organisation["id"])
        return {"token": token, "code": None, "isFirstLogin": False}

    def authenticateInDifferentOrganization(
        self,
        info: Info,
        id: str,
    ) -> Any:
        if id != self._state.organisation["id"]:
            raise GraphQLError(f"no organisation with id {id}")
        return {"token": self._tokens.issue(_user(info), id)}

    def ticketCreate(self, info: Info, ticket: dict[str, Any]) -> Any:
        fields = {"idOwner": _user(info), **_given(ticket)}
        ticket_id, webhooks = _refusing(
            lambda: self._state.create_ticket(fields, owner_id=_user(info))
        )
        self._emit(webhooks)
        return ticket_id

    def ticketUpdate(
        self,
        _info: Info,
        id: str,
        ticket: dict[str, Any],
    ) -> Any:
        self._emit(_refusing(lambda: self._state.update_ticket(id, ticket)))
        return id

    def contactCreate(self, info: Info, contact: dict[str, Any]) -> Any:
        fields = _given(contact)
        contact_id, webhooks = _refusing(
            lambda: self._state.create_contact(
                fields, owner_id=fields.get("idOwner") or _user(info)
            )
        )
        self._emit(webhooks)
        return contact_id

    def noteCreate(self, info: Info, note: dict[str, Any]) -> Any:
        note_id, webhooks = _refusing(
            lambda: self._state.create_note(note, owner_id=_user(info))
        )
        self._emit(webhooks)
        return note_id


def _user(info: Info) -> str:
    return info.context.user_id or seed.OWNER_ID


def _given(fields: dict[str, Any]) -> dict[str, Any]:
    """Input fields without explicit nulls, for creating a record."""
    return {name: value for name, value in fields.items() if value is not None}


def _refusing(change: Callable[[], T]) -> T:
    try:
        return change()
    except SimulatorError as error:
        raise GraphQLError(str(error)) from None
