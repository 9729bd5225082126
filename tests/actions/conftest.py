"""Fixtures for action kinds: the simulators, behind a ``Services`` of our own.

Graph calls reach the Microsoft 365 simulator in-process through a real
``GraphClient``; SalesTrekker calls reach its simulator through a real
``SalesTrekkerClient``. Outbound HTTP goes through a plain httpx client, to
receivers the tests serve on loopback. Nothing here needs the database.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import Field, SecretStr

from brokerhooks.actions.base import ActionContext, PriorAction
from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.connectors.msgraph.client import CHUNK_MULTIPLE, GraphClient
from brokerhooks.connectors.salestrekker import (
    MemoryTokenStore,
    RateLimits,
    SalesTrekkerClient,
    WorkflowCache,
)
from brokerhooks.rules.model import MICROSOFT_365_KINDS
from brokerhooks.security.secrets import Secret
from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from tests.connectors.msgraph.conftest import ANN, CLIENT_ID, CLIENT_SECRET, TENANT

GRAPH_URL = "https://graph.test"
SALESTREKKER_KEY = "5a1e5c0ffee0ddba11f00d5eedfacade12345678"
SALESTREKKER_URL = "https://acme.salestrekker.com"
BROKER_ID = "0b7e3a52-4d1c-4f0e-9a57-7f2f4c1d9e01"
CONNECTION = "office"
RULE_ID = "settlement"
STEP_ID = "step-1"


class ActionSettings(Settings):
    """Settings with the action settings read through ``getattr``.

    brokerhooks' Settings may not carry these yet; the kinds read them with
    defaults, and tests set them here.
    """

    files_folder: Path | None = None
    http_allow_private: bool = False
    http_signing_secret: SecretStr | None = None
    action_timeout_seconds: float = Field(default=30.0, gt=0)


def action_settings(**values: Any) -> ActionSettings:
    """Settings from ``values`` and defaults only, not the environment."""
    return ActionSettings.model_validate(
        {
            "env": "production",
            "database_url": "sqlite:///:memory:",
            "secret_keys": [SecretStr(Fernet.generate_key().decode())],
            **values,
        }
    )


class SimulatorTokens:
    """Graph tokens minted by the simulator, as a signed-in connection has."""

    def __init__(self, sim: MicrosoftGraphSimulator) -> None:
        self.sim = sim

    async def __call__(self, *, force_refresh: bool = False) -> Secret:
        return Secret(self.sim.issue_access_token(ANN))


class Sleeps:
    """Stands in for asyncio.sleep in the Graph client: records, never waits."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@dataclass
class SimulatedServices:
    """``Services`` over the simulators: one broker with one connection."""

    settings: Settings
    http: httpx.AsyncClient
    graph_sim: MicrosoftGraphSimulator
    salestrekker_client: SalesTrekkerClient
    sleeps: Sleeps = field(default_factory=Sleeps)

    @asynccontextmanager
    async def graph(self, connection: str) -> AsyncIterator[GraphClient]:
        if connection != CONNECTION:
            raise PermanentError(
                f"broker has no Microsoft 365 connection called {connection!r}"
            )
        async with GraphClient(
            token_provider=SimulatorTokens(self.graph_sim),
            mailbox=ANN,
            app_only=False,
            graph_url=GRAPH_URL,
            transport=self.graph_sim.transport(),
            chunk_size=4 * CHUNK_MULTIPLE,
            sleep=self.sleeps,
        ) as client:
            yield client

    def salestrekker(self) -> SalesTrekkerClient:
        return self.salestrekker_client


ContextFactory = Callable[..., ActionContext]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def graph_sim() -> MicrosoftGraphSimulator:
    sim = MicrosoftGraphSimulator(tenant_id=TENANT)
    sim.add_app(CLIENT_ID, CLIENT_SECRET)
    sim.add_user(ANN, "Ann Smith")
    return sim


@pytest.fixture
def salestrekker_sim() -> SalesTrekkerSimulator:
    return SalesTrekkerSimulator(SALESTREKKER_KEY)


@pytest.fixture
def files_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    return folder


@pytest.fixture
def settings_values(files_folder: Path) -> dict[str, Any]:
    """What tests change in the settings before ``services`` is built."""
    return {"files_folder": files_folder}


@pytest.fixture
async def services(
    graph_sim: MicrosoftGraphSimulator,
    salestrekker_sim: SalesTrekkerSimulator,
    settings_values: dict[str, Any],
) -> AsyncIterator[SimulatedServices]:
    salestrekker = SalesTrekkerClient(
        broker_id=BROKER_ID,
        broker_name="acme",
        base_url=SALESTREKKER_URL,
        api_key=Secret(SALESTREKKER_KEY),
        tokens=MemoryTokenStore(),
        timeout=5.0,
        rate_per_second=1000.0,
        workflow_cache=WorkflowCache(),
        transport=salestrekker_sim.transport(),
        rate_limits=RateLimits(),
    )
    async with httpx.AsyncClient() as http, salestrekker:
        yield SimulatedServices(
            settings=action_settings(**settings_values),
            http=http,
            graph_sim=graph_sim,
            salestrekker_client=salestrekker,
        )


@pytest.fixture
def make_context(services: SimulatedServices) -> ContextFactory:
    """Build the context the worker would hand a kind.

    ``make_context(kind, params, **changes)``: a new event each call unless
    ``event_id`` is given; ``changes`` override any other field.
    """

    def make(kind: str, params: dict[str, Any], **changes: Any) -> ActionContext:
        event_id = changes.pop("event_id", None) or str(uuid.uuid4())
        ctx = ActionContext(
            key=f"{event_id}:{RULE_ID}:{STEP_ID}",
            broker_id=BROKER_ID,
            event_id=event_id,
            deal_id=SalesTrekkerSimulator.DEAL_ID,
            rule_id=RULE_ID,
            step_id=STEP_ID,
            kind=kind,
            connection=CONNECTION if kind in MICROSOFT_365_KINDS else None,
            params=params,
            event={
                "id": event_id,
                "type": "dealChangesStage",
                "entity_id": SalesTrekkerSimulator.DEAL_ID,
                "deal_id": SalesTrekkerSimulator.DEAL_ID,
                "payload": {"event": "dealChangesStage"},
            },
            services=services,
        )
        return dataclasses.replace(ctx, **changes)

    return make


def prior_of(ctx: ActionContext, remote_id: str | None, output: Any) -> PriorAction:
    """What the ledger would hand the next run after ``ctx`` was done."""
    return PriorAction(event_id=ctx.event_id, remote_id=remote_id, output=output)
