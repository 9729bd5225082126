"""Who is calling: the broker behind the bearer token.

Every route but the OpenAPI description depends on ``current_broker``. A
missing, malformed, unknown or revoked token, or the token of a removed
broker, gets the same 401. The token is hashed at once and never logged;
``last_used_at`` is written at most once a minute per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from brokerhooks.api.errors import unauthorized
from brokerhooks.runtime import Runtime
from brokerhooks.security.secrets import Secret
from brokerhooks.store import api_tokens
from brokerhooks.store.database import transaction
from brokerhooks.store.types import utcnow

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A broker's API token: `brokerhooks tokens add --broker NAME`.",
)


@dataclass(frozen=True, slots=True)
class Caller:
    """The broker a request speaks for; every query is limited to it."""

    broker_id: str
    broker_name: str
    token_id: str


def runtime_of(request: Request) -> Runtime:
    """The runtime given to ``create_api`` (the API app's own state)."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def current_broker(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller, or 401. Runs in a worker thread (it reads the store)."""
    if credentials is None:
        raise unauthorized()
    token = Secret(credentials.credentials)
    if not _well_formed(token):
        raise unauthorized()

    engine = runtime_of(request).engine
    token_hash = api_tokens.hash_token(token)
    with transaction(engine) as connection:
        holder = api_tokens.find_token_holder(connection, token_hash)
    if holder is None:
        raise unauthorized()

    now = utcnow()
    if api_tokens.needs_touch(holder, now):
        with transaction(engine, write=True) as connection:
            api_tokens.touch_api_token(connection, holder.token_id, now)
    request.state.broker_id = holder.broker_id
    return Caller(holder.broker_id, holder.broker_name, holder.token_id)


def _well_formed(token: Secret) -> bool:
    """Whether a token can be one of ours: spares the store obvious misses."""
    value = token.reveal()
    return len(value) == api_tokens.TOKEN_LENGTH and value.startswith(
        api_tokens.TOKEN_PREFIX
    )


CurrentBroker = Annotated[Caller, Depends(current_broker)]
RuntimeDep = Annotated[Runtime, Depends(runtime_of)]
