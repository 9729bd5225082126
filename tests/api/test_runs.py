"""``/api/v1/runs``: pages and filters, one run with its trace and actions."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import Tenant, World

pytestmark = pytest.mark.anyio

RUNS = "/api/v1/runs"


async def _page(
    client: httpx.AsyncClient, world: World, **params: str | int | None
) -> tuple[list[int], int | None]:
    """The ids of a page of acme's runs, and its ``next``."""
    response = await client.get(RUNS, params=params, headers=world.acme.headers)
    assert response.status_code == 200, response.text
    page = response.json()
    return [run["id"] for run in page["items"]], page["next"]


async def test_pages_and_filters(world: World, client: httpx.AsyncClient) -> None:
    created, stage = world.acme.runs

    first, cursor = await _page(client, world, limit=1)
    second, end = await _page(client, world, limit=1, before=cursor)

    assert (first, cursor) == ([stage], stage)
    assert (second, end) == ([created], None)
    assert await _page(client, world, rule="created-file") == ([created], None)
    assert await _page(client, world, status="pending") == ([stage, created], None)
    assert await _page(client, world, status="failed") == ([], None)


async def test_a_run_with_its_trace_and_actions(
    world: World, client: httpx.AsyncClient
) -> None:
    stage = world.acme.runs[-1]

    response = await client.get(f"{RUNS}/{stage}", headers=world.acme.headers)

    assert response.status_code == 200
    run = response.json()
    assert run["id"] == stage
    assert run["event_id"] == world.acme.processed[-1]
    assert run["rule"] == "stage-file"
    assert run["outcome"] == "fired"
    assert run["status"] == "pending"
    assert run["trace"]["condition"]["value"] is True
    assert run["trace"]["steps"][0]["timing"]["when"] == "now"
    [action] = run["actions"]
    assert action["key"] == f"{world.acme.processed[-1]}:stage-file:file"
    assert action["status"] == "scheduled"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"{RUNS}/999999", 404),
        (f"{RUNS}/0", 400),
        (f"{RUNS}/{2**63}", 400),
        (f"{RUNS}/one", 400),
        (f"{RUNS}?before={2**63}", 400),
        (f"{RUNS}?rule=Not%20A%20Slug", 400),
        (f"{RUNS}?status=done", 400),
    ],
)
async def test_bad_ids_and_parameters(
    lone: Tenant, client: httpx.AsyncClient, path: str, status: int
) -> None:
    response = await client.get(path, headers=lone.headers)

    assert response.status_code == status
    assert response.json()["error"] in ("not_found", "invalid_request")
