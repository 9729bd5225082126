"""A connection whose sign-in Microsoft refuses stops its actions for good.

Runs the real token path: a stored delegated connection, msal against the
simulator's identity endpoints over HTTPS, then a refresh refused with
``invalid_grant``. The kind must let ReconnectRequired through as the
PermanentError it is, so that the worker parks the action instead of
retrying it. This test uses the database (the connection is stored).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.routing import Route

from brokerhooks.actions.registry import get_kind
from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.connectors.msgraph import auth
from brokerhooks.connectors.msgraph.callback import m365_callback
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.connectors.msgraph.errors import ReconnectRequired
from brokerhooks.security.secrets import Vault
from brokerhooks.simulators.msgraph import (
    LoopbackCertificates,
    MicrosoftGraphSimulator,
    make_loopback_certificates,
)
from brokerhooks.store.connections import M365ConnectionRecord
from tests.actions.conftest import (
    CONNECTION,
    ContextFactory,
    SimulatedServices,
)
from tests.connectors.msgraph.conftest import (
    ANN,
    REDIRECT_URI,
    add_connection,
    get_connection,
    open_sign_in_link,
    path_of,
    serve_https,
)
from tests.helpers import add_broker

pytestmark = pytest.mark.anyio


@dataclass
class StoredConnectionServices(SimulatedServices):
    """Graph through a stored connection's tokens, as the worker opens it."""

    engine: Engine | None = None
    vault: Vault | None = None
    connection_id: str = ""

    @asynccontextmanager
    async def graph(self, connection: str) -> AsyncIterator[GraphClient]:
        assert self.engine is not None
        assert self.vault is not None
        async with auth.graph_client(
            self.engine,
            self.vault,
            self.connection_id,
            transport=self.graph_sim.transport(),
            sleep=self.sleeps,
        ) as client:
            yield client


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCertificates:
    return make_loopback_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def authority_url(
    graph_sim: MicrosoftGraphSimulator,
    certificates: LoopbackCertificates,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates.ca_path))
    with serve_https(graph_sim.app, certificates) as base:
        yield base


@pytest.fixture
async def signed_in(
    engine: Engine,
    settings: Settings,
    authority_url: str,
    certificates: LoopbackCertificates,
) -> M365ConnectionRecord:
    """A delegated connection that Ann signed in to, through the callback."""
    vault = Vault(settings.fernet_keys)
    broker = add_broker(engine, vault, name="acme")
    record = add_connection(engine, vault, broker, authority_url, name=CONNECTION)
    link = await asyncio.to_thread(
        auth.begin_sign_in, engine, vault, record.id, redirect_uri=REDIRECT_URI
    )
    back = await asyncio.to_thread(open_sign_in_link, link, certificates)
    app = Starlette(
        routes=[Route(path_of(REDIRECT_URI), m365_callback, methods=["POST"])]
    )
    app.state.runtime = SimpleNamespace(engine=engine, vault=vault)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://brokerhooks.test"
    ) as browser:
        page = await browser.post(path_of(back.action), data=back.fields)
    assert page.status_code == 200, page.text
    return get_connection(engine, record.id)


async def test_invalid_grant_parks_the_action_with_the_command_to_run(
    engine: Engine,
    settings: Settings,
    graph_sim: MicrosoftGraphSimulator,
    services: SimulatedServices,
    make_context: ContextFactory,
    signed_in: M365ConnectionRecord,
) -> None:
    stored = StoredConnectionServices(
        **{f.name: getattr(services, f.name) for f in dataclasses.fields(services)},
        engine=engine,
        vault=Vault(settings.fernet_keys),
        connection_id=signed_in.id,
    )
    params = {"list": "Deals", "title": "Call the valuer"}
    graph_sim.fail_token_requests(grant_type="refresh_token", error="invalid_grant")
    graph_sim.expire_access_tokens()

    with pytest.raises(ReconnectRequired) as raised:
        await get_kind("todo_task").perform(
            make_context("todo_task", params, services=stored)
        )

    assert isinstance(raised.value, PermanentError)
    assert "invalid_grant" in str(raised.value)
    assert f"brokerhooks connections m365 connect {CONNECTION}" in str(raised.value)
    assert get_connection(engine, signed_in.id).status == "needs_reconnect"
    # Nothing was made: the list lookup was the first call, and it was refused.
    assert [item["displayName"] for item in graph_sim.task_lists(ANN)] == ["Tasks"]
