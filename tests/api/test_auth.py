"""Bearer tokens: one 401 for every way of not having a valid one."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, select, update

from brokerhooks.logs import configure_logging
from brokerhooks.security.secrets import Secret
from brokerhooks.store import api_tokens
from brokerhooks.store.brokers import remove_broker
from brokerhooks.store.database import transaction
from brokerhooks.store.models import ApiToken
from brokerhooks.store.types import utcnow
from tests.api.conftest import Tenant, World, add_token

pytestmark = pytest.mark.anyio

EVENTS = "/api/v1/events"


def _hash(token: str) -> str:
    return api_tokens.hash_token(Secret(token))


def _revoke(engine: Engine, token: str) -> None:
    with transaction(engine, write=True) as connection:
        holder = api_tokens.find_token_holder(connection, _hash(token))
        assert holder is not None
        api_tokens.revoke_api_token(connection, holder.token_id)


def _last_used(engine: Engine, token: str) -> datetime | None:
    with transaction(engine) as connection:
        return connection.scalar(
            select(ApiToken.last_used_at).where(ApiToken.token_hash == _hash(token))
        )


async def test_a_token_reaches_its_brokers_events(
    world: World, client: httpx.AsyncClient
) -> None:
    response = await client.get(EVENTS, headers=world.acme.headers)

    assert response.status_code == 200
    assert {event["broker"] for event in response.json()["items"]} == {"acme"}


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic YWNtZTpzZWNyZXQ=",
        "Salestrekker api-test-key-acme-0123456789",
        "Bearer bh_short",
        "Bearer " + api_tokens.new_token().reveal(),
        "Bearer " + api_tokens.new_token().reveal().replace("bh_", "xx_"),
    ],
    ids=[
        "missing",
        "empty",
        "no-token",
        "basic",
        "salestrekker-key",
        "malformed",
        "unknown",
        "wrong-prefix",
    ],
)
async def test_no_valid_token_gets_one_401(
    lone: Tenant, client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}

    response = await client.get(EVENTS, headers=headers)

    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "detail": "send a valid API token as `Authorization: Bearer <token>`; "
        "make one with `brokerhooks tokens add --broker NAME`",
    }
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_revoked_and_removed_brokers_tokens_get_the_same_401(
    world: World, client: httpx.AsyncClient
) -> None:
    unknown = await client.get(
        EVENTS, headers={"Authorization": f"Bearer {api_tokens.new_token().reveal()}"}
    )
    _revoke(world.engine, world.acme.token)
    with transaction(world.engine, write=True) as connection:
        remove_broker(connection, "other", purge=False)

    revoked = await client.get(EVENTS, headers=world.acme.headers)
    removed = await client.get(EVENTS, headers=world.other.headers)

    assert revoked.status_code == removed.status_code == 401
    assert revoked.json() == removed.json() == unknown.json()


async def test_a_token_of_a_purged_broker_is_gone(
    world: World, client: httpx.AsyncClient
) -> None:
    """Purging deletes the broker's row; its tokens go with it (cascade)."""
    with transaction(world.engine, write=True) as connection:
        remove_broker(connection, "other", purge=True)

    response = await client.get(EVENTS, headers=world.other.headers)

    assert response.status_code == 401
    with transaction(world.engine) as connection:
        assert (
            connection.scalar(
                select(ApiToken.id).where(ApiToken.broker_id == world.other.id)
            )
            is None
        )


async def test_use_is_recorded_at_most_once_a_minute(
    world: World, client: httpx.AsyncClient
) -> None:
    token = add_token(world.engine, world.acme.id, "fresh")
    headers = {"Authorization": f"Bearer {token}"}
    assert _last_used(world.engine, token) is None

    await client.get(EVENTS, headers=headers)
    first = _last_used(world.engine, token)
    await client.get(EVENTS, headers=headers)
    second = _last_used(world.engine, token)
    an_hour_ago = utcnow() - timedelta(hours=1)
    with transaction(world.engine, write=True) as connection:
        connection.execute(
            update(ApiToken)
            .where(ApiToken.token_hash == _hash(token))
            .values(last_used_at=an_hour_ago)
        )
    await client.get(EVENTS, headers=headers)
    third = _last_used(world.engine, token)

    assert first is not None
    assert second == first
    assert third is not None
    assert third > an_hour_ago


async def test_the_description_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    assert response.json()["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A broker's API token: `brokerhooks tokens add --broker NAME`.",
    }


async def test_no_token_reaches_the_log(
    world: World, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")  # to the standard error capsys reads
    revoked = add_token(world.engine, world.acme.id, "revoked")
    _revoke(world.engine, revoked)

    await client.get(EVENTS, headers=world.acme.headers)
    await client.get(f"{EVENTS}?q={world.acme.token}", headers=world.acme.headers)
    await client.get(EVENTS, headers={"Authorization": f"Bearer {revoked}"})
    await client.get(EVENTS, headers={"Authorization": f"Bearer {revoked}x"})

    logs = capsys.readouterr().err
    assert logs.count('"api_request"') == 4
    for token in (world.acme.token, revoked):
        assert token not in logs
        assert token[3:20] not in logs
