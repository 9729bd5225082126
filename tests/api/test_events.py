"""``/api/v1/events``: pages, filters, details, replay."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from brokerhooks.store.database import transaction
from brokerhooks.store.models import Event
from brokerhooks.store.types import utcnow
from tests.api.conftest import Tenant, World
from tests.helpers import queue_event

pytestmark = pytest.mark.anyio

EVENTS = "/api/v1/events"


async def _ids(
    client: httpx.AsyncClient, world: World, **params: str | int
) -> list[str]:
    response = await client.get(EVENTS, params=params, headers=world.acme.headers)
    assert response.status_code == 200, response.text
    return [event["id"] for event in response.json()["items"]]


async def test_pages_walk_every_event_newest_first(
    world: World, client: httpx.AsyncClient
) -> None:
    deal = str(uuid.uuid4())
    more = [
        queue_event(world.engine, world.acme.id, "dealUpdated", deal) for _ in range(3)
    ]
    expected = list(reversed([*world.acme.processed, world.acme.waiting, *more]))

    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["before"] = cursor
        page = (
            await client.get(EVENTS, params=params, headers=world.acme.headers)
        ).json()
        seen += [event["id"] for event in page["items"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break

    assert seen == expected
    assert pages == 3


async def test_filters(world: World, client: httpx.AsyncClient) -> None:
    created, stage = world.acme.processed
    an_hour_ago = (utcnow() - timedelta(hours=1)).isoformat()
    deal = (await client.get(f"{EVENTS}/{stage}", headers=world.acme.headers)).json()[
        "deal_id"
    ]

    assert await _ids(client, world, type="dealChangesStage") == [stage]
    assert await _ids(client, world, type="DEALCHANGESSTAGE") == [stage]
    assert await _ids(client, world, status="received") == [world.acme.waiting]
    assert await _ids(client, world, deal_id=deal) == [stage, created]
    assert await _ids(client, world, deal_id=deal.upper()) == [stage, created]
    assert await _ids(client, world, q="contactCreated") == [world.acme.waiting]
    assert await _ids(client, world, q="%") == []
    assert await _ids(client, world, until=an_hour_ago) == []
    assert len(await _ids(client, world, since=an_hour_ago)) == 3


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("limit=0", "query.limit"),
        ("limit=201", "query.limit"),
        ("limit=ten", "query.limit"),
        ("status=finished", "query.status"),
        ("since=2025-03-14T09:30:00", "query.since"),  # no zone
        ("since=1741944600", "query.since"),  # an epoch is not taken for a time
        ("since=0001-01-01T00:00:00%2B01:00", "query.since"),  # before year 1 in UTC
        ("until=9999-12-31T23:59:59-01:00", "query.until"),  # after 9999 in UTC
        ("before=not-an-id", "query.before"),
        ("deal_id=42", "query.deal_id"),
        ("q=%00", "query.q"),
        ("type=" + "x" * 101, "query.type"),
        ("limit=1&limit=2", "limit"),
    ],
)
async def test_bad_parameters_get_400_naming_them(
    lone: Tenant, client: httpx.AsyncClient, query: str, problem: str
) -> None:
    response = await client.get(f"{EVENTS}?{query}", headers=lone.headers)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_request"
    assert problem in body["detail"]


async def test_details_hold_delivery_attempts_snapshot_changes_and_runs(
    world: World, client: httpx.AsyncClient
) -> None:
    stage = world.acme.processed[-1]

    response = await client.get(f"{EVENTS}/{stage}", headers=world.acme.headers)

    assert response.status_code == 200
    event = response.json()
    assert event["type"] == "dealChangesStage"
    assert event["status"] == "done"
    assert event["payload"] == {"event": "dealChangesStage", "id": event["entity_id"]}
    assert event["delivery"]["id"] == event["delivery_id"]
    assert [attempt["outcome"] for attempt in event["attempts"]] == ["done"]
    assert event["snapshot"]["id"] == event["entity_id"]
    assert set(event["changes"]) == {"stage"}
    assert set(event["changes"]["stage"]) == {"from", "to"}
    [run] = event["runs"]
    assert run["rule"] == "stage-file"
    assert run["trace"]["outcome"] == "fired"
    assert run["trace"]["condition"]["source"] == "has(changes.stage)"
    assert [action["step"] for action in run["actions"]] == ["file"]
    assert run["actions"][0]["params"]["path"] == f"stages/{event['entity_id']}.txt"


async def test_an_unknown_event_is_not_found(
    world: World, client: httpx.AsyncClient
) -> None:
    missing = str(uuid.uuid4())

    response = await client.get(f"{EVENTS}/{missing}", headers=world.acme.headers)

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": f"no event {missing}"}


async def test_replay_queues_a_processed_event_once(
    world: World, client: httpx.AsyncClient
) -> None:
    stage = world.acme.processed[-1]

    first = await client.post(f"{EVENTS}/{stage}/replay", headers=world.acme.headers)
    again = await client.post(f"{EVENTS}/{stage}/replay", headers=world.acme.headers)
    waiting = await client.post(
        f"{EVENTS}/{world.acme.waiting}/replay", headers=world.acme.headers
    )

    assert first.status_code == 202
    assert first.json()["status"] == "received"
    assert again.status_code == waiting.status_code == 409
    assert again.json()["error"] == "conflict"
    assert "already queued" in again.json()["detail"]


async def test_an_unsupported_event_cannot_be_replayed(
    world: World, client: httpx.AsyncClient
) -> None:
    event_id = world.acme.processed[0]
    with transaction(world.engine, write=True) as connection:
        connection.execute(
            update(Event)
            .where(Event.id == event_id)
            .values(status="unsupported", type="dealExploded")
        )

    response = await client.post(
        f"{EVENTS}/{event_id}/replay", headers=world.acme.headers
    )

    assert response.status_code == 409
    assert "unsupported" in response.json()["detail"]
