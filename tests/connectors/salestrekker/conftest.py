"""Fixtures for the SalesTrekker connector: a simulator and clients of it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from brokerhooks.connectors.salestrekker import (
    MemoryTokenStore,
    RateLimits,
    SalesTrekkerClient,
    WorkflowCache,
)
from brokerhooks.security.secrets import Secret
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator

API_KEY = "5a1e5c0ffee0ddba11f00d5eedfacade12345678"
TENANT_URL = "https://acme.salestrekker.com"

ClientFactory = Callable[..., SalesTrekkerClient]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def simulator() -> SalesTrekkerSimulator:
    return SalesTrekkerSimulator(API_KEY)


@pytest.fixture
def tokens() -> MemoryTokenStore:
    return MemoryTokenStore()


@pytest.fixture
async def make_client(
    simulator: SalesTrekkerSimulator, tokens: MemoryTokenStore
) -> AsyncIterator[ClientFactory]:
    """Build clients of the simulator; each test gets a broker of its own.

    Keyword arguments override the client's defaults: a generous rate, a
    fresh cache, the simulator's transport and the test's token store.
    """
    broker_id = str(uuid.uuid4())
    made: list[SalesTrekkerClient] = []

    def make(**overrides: Any) -> SalesTrekkerClient:
        arguments: dict[str, Any] = {
            "broker_id": broker_id,
            "broker_name": "acme",
            "base_url": TENANT_URL,
            "api_key": Secret(API_KEY),
            "tokens": tokens,
            "timeout": 5.0,
            "rate_per_second": 1000.0,
            "workflow_cache": WorkflowCache(),
            "transport": simulator.transport(),
            "rate_limits": RateLimits(),
        }
        arguments.update(overrides)
        client = SalesTrekkerClient(**arguments)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


def mock_transport(
    *answers: httpx.Response | Callable[[httpx.Request], httpx.Response],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that answers with ``answers`` in turn; the last repeats.

    The first request (authenticate) always gets a token.
    """
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if b"authenticate(" in request.content:
            return httpx.Response(200, json={"data": {"authenticate": {"token": "t"}}})
        answered = sum(b"authenticate(" not in r.content for r in seen)
        answer = answers[min(answered, len(answers)) - 1]
        return answer(request) if callable(answer) else answer

    return httpx.MockTransport(handle), seen
