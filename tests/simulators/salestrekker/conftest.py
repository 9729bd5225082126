"""Fixtures for the simulators: a SalesTrekker simulator and a way to call it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator

API_KEY = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """A webhook receiver: records each request, answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, json={"status": "accepted"})

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]

    @property
    def events(self) -> list[str]:
        return [body["event"] for body in self.bodies]


@pytest.fixture
def receiver() -> Recorder:
    return Recorder()


@pytest.fixture
def simulator(receiver: Recorder) -> SalesTrekkerSimulator:
    return SalesTrekkerSimulator(
        API_KEY,
        "http://brokerhooks.test/hooks/salestrekker",
        webhook_transport=httpx.MockTransport(receiver),
    )


class GraphQL:
    """Sends GraphQL requests to a simulator in-process."""

    def __init__(self, simulator: SalesTrekkerSimulator) -> None:
        self.simulator = simulator
        self.token: str | None = None

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        body: Any = None,
    ) -> httpx.Response:
        headers = {}
        bearer = token if token is not None else self.token
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        async with httpx.AsyncClient(
            transport=self.simulator.transport(), base_url="http://sim.test"
        ) as client:
            return await client.post(
                "/graphql",
                json=body
                if body is not None
                else {"query": query, "variables": variables},
                headers=headers,
            )

    async def login(self, api_key: str = API_KEY) -> str:
        response = await self.post(
            "mutation Authenticate($k: String!) { authenticate(apiKey: $k) { token } }",
            {"k": api_key},
        )
        token: str = response.json()["data"]["authenticate"]["token"]
        self.token = token
        return token

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """The ``data`` of an answer that must have no errors."""
        response = await self.post(query, variables)
        document = response.json()
        assert response.status_code == 200, document
        assert "errors" not in document, document
        return document["data"]


@pytest.fixture
async def gql(simulator: SalesTrekkerSimulator) -> GraphQL:
    api = GraphQL(simulator)
    await api.login()
    return api
