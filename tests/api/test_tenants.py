"""No broker sees another's records through the API.

The route list comes from the app itself: a route added later with an id
in its path is walked too, and fails here until the test knows an id of
its kind. Deletions are walked last, so that nothing is gone before it is
tried.
"""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from brokerhooks.api import create_api
from brokerhooks.runtime import Runtime
from brokerhooks.store import rules as rule_store
from brokerhooks.store.browse import EventFilter, page_events
from brokerhooks.store.database import transaction
from tests.api.conftest import World

pytestmark = pytest.mark.anyio

RULE_FILE = """\
rules:
  - id: acme-only
    trigger: dealChangesStage
    actions:
      - kind: write_file
        params:
          path: taken.txt
"""


def _routes_with_ids(runtime: Runtime) -> list[tuple[str, str]]:
    """Every operation of the app with an id in its path.

    Taken from the app's own description, which lists every route (a route
    left out of it fails tests/api/test_openapi.py).
    """
    paths = create_api(runtime).openapi()["paths"]
    return sorted(
        (
            (method.upper(), path)
            for path, operations in paths.items()
            if "{" in path
            for method in operations
        ),
        key=lambda route: (route[0] == "DELETE", route),
    )


def _ids(world: World) -> dict[str, str]:
    """An id of each kind, all acme's."""
    return {
        "event_id": world.acme.processed[-1],
        "rule_id": "acme-only",
        "run_id": str(world.acme.runs[-1]),
    }


def _fill(path: str, ids: dict[str, str]) -> str:
    names = re.findall(r"{(\w+)}", path)
    missing = [name for name in names if name not in ids]
    assert not missing, f"{path}: give the test an id of acme's for {missing}"
    return "/api/v1" + re.sub(r"{(\w+)}", lambda m: ids[m[1]], path)


async def test_every_id_of_another_broker_is_not_found(
    world: World, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    routes = _routes_with_ids(runtime)
    assert len(routes) >= 8  # the walk found the routes
    ids = _ids(world)
    unknown = {
        "event_id": str(uuid.uuid4()),
        "rule_id": "no-such-rule",
        "run_id": str(10**12),
    }

    for method, path in routes:
        foreign = await client.request(
            method, _fill(path, ids), headers=world.other.headers, content=RULE_FILE
        )
        missing = await client.request(
            method, _fill(path, unknown), headers=world.other.headers, content=RULE_FILE
        )

        assert foreign.status_code == 404, (method, path, foreign.text)
        # Told apart from an id that exists nowhere by nothing but the id.
        expected = missing.text
        for name in re.findall(r"{(\w+)}", path):
            expected = expected.replace(unknown[name], ids[name])
        assert foreign.text == expected, (method, path)


async def test_acmes_records_are_untouched_by_the_walk(
    world: World, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ids = _ids(world)
    for method, path in _routes_with_ids(runtime):
        await client.request(
            method, _fill(path, ids), headers=world.other.headers, content=RULE_FILE
        )

    with transaction(world.engine) as connection:
        rule = rule_store.get_rule(connection, world.acme.id, "acme-only")
        events, _ = page_events(connection, EventFilter(broker_id=world.acme.id))
    assert rule.enabled
    assert "taken.txt" not in rule.source
    assert {event.id: event.status for event in events}[ids["event_id"]] == "done"


async def test_the_same_ids_are_found_with_their_own_brokers_token(
    world: World, client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """So the 404s above are about the broker, not about the ids."""
    ids = _ids(world)
    for method, path in _routes_with_ids(runtime):
        if method != "GET":
            continue
        response = await client.get(_fill(path, ids), headers=world.acme.headers)
        assert response.status_code == 200, (path, response.text)


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/runs", "/api/v1/rules"])
async def test_lists_hold_only_the_brokers_own_records(
    world: World, client: httpx.AsyncClient, path: str
) -> None:
    acme = await client.get(path, headers=world.acme.headers)
    other = await client.get(path, headers=world.other.headers)

    assert acme.status_code == other.status_code == 200
    acme_ids = {item["id"] for item in acme.json()["items"]}
    other_ids = {item["id"] for item in other.json()["items"]}
    assert acme_ids
    if path != "/api/v1/rules":  # rule ids are the broker's own names
        assert not acme_ids & other_ids


async def test_filtering_by_another_brokers_deal_finds_nothing(
    world: World, client: httpx.AsyncClient
) -> None:
    event = await client.get(
        f"/api/v1/events/{world.acme.processed[-1]}", headers=world.acme.headers
    )
    deal_id = event.json()["deal_id"]

    found = await client.get(
        "/api/v1/events", params={"deal_id": deal_id}, headers=world.other.headers
    )

    assert found.json() == {"items": [], "next": None}
