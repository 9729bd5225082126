"""The API as a whole: its description and page, and answers that are not
the routes' own (unknown paths, methods, an unreachable store, a fault)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, update

from brokerhooks.api import create_api
from brokerhooks.app import create_app
from brokerhooks.config import Settings, load_settings
from brokerhooks.runtime import Runtime
from brokerhooks.store.database import make_engine, transaction
from brokerhooks.store.models import Run
from tests.api.conftest import Tenant, World

pytestmark = pytest.mark.anyio


async def test_the_description_says_where_the_api_is(
    client: httpx.AsyncClient,
) -> None:
    description = (await client.get("/api/v1/openapi.json")).json()

    assert description["servers"] == [{"url": "/api/v1"}]
    assert description["info"]["title"] == "brokerhooks"
    assert "/events/{event_id}/replay" in description["paths"]


async def test_the_docs_page_needs_nothing_from_outside(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/docs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "/api/v1/events/{event_id}/replay" in page
    assert "Queue an event to be processed again" in page
    assert "https://" not in page  # no CDN, no script from elsewhere


async def test_the_api_runs_without_the_service_around_it(
    lone: Tenant, runtime: Runtime
) -> None:
    """``create_api`` takes its runtime; it needs nothing of the parent app."""
    transport = httpx.ASGITransport(app=create_api(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
        response = await api.get("/rules", headers=lone.headers)

    assert response.status_code == 200
    assert response.json() == {"items": []}


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/api/v1/nothing", 404, "not_found"),
        ("GET", "/api/v1/rules/a%0Ab", 400, "invalid_request"),
        ("GET", "/api/v1/events/%0A", 400, "invalid_request"),
        ("GET", "/api/v1/%0A", 404, "not_found"),
        ("DELETE", "/api/v1/events", 405, "method_not_allowed"),
        ("PATCH", "/api/v1/rules/stage-file", 405, "method_not_allowed"),
    ],
)
async def test_answers_outside_the_routes_are_json_too(
    lone: Tenant,
    client: httpx.AsyncClient,
    method: str,
    path: str,
    status: int,
    error: str,
) -> None:
    response = await client.request(method, path, headers=lone.headers)

    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == error


async def test_an_unreachable_store_gets_503(
    lone: Tenant, settings: Settings, tmp_path: Path
) -> None:
    gone = load_settings(database_url=f"sqlite:///{tmp_path}/missing/dir/db.sqlite")
    runtime = Runtime.build(gone, make_engine(gone))
    transport = httpx.ASGITransport(app=create_app(gone, runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
        response = await client.get("/api/v1/events", headers=lone.headers)

    assert response.status_code == 503
    assert response.json()["error"] == "store_unavailable"
    assert response.headers["Retry-After"] == "5"


@pytest.fixture
async def lenient_client(
    settings: Settings, runtime: Runtime
) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the 500 the app sends instead of its exception."""
    transport = httpx.ASGITransport(
        app=create_app(settings, runtime), raise_app_exceptions=False
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://s") as client:
        yield client


async def test_a_fault_gets_500_saying_nothing_of_the_code(
    world: World, engine: Engine, lenient_client: httpx.AsyncClient
) -> None:
    with transaction(engine, write=True) as connection:
        connection.execute(update(Run).values(trace="{not json"))

    response = await lenient_client.get(
        f"/api/v1/runs/{world.acme.runs[-1]}", headers=world.acme.headers
    )

    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "something went wrong on our side; the log says what",
    }
