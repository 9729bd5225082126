"""A worker keeps one token provider per connection between actions."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from brokerhooks.connectors.msgraph.auth import TokenProviders, graph_client
from brokerhooks.connectors.msgraph.errors import ReconnectRequired
from brokerhooks.security.secrets import Vault
from brokerhooks.simulators.msgraph import LoopbackCertificates, MicrosoftGraphSimulator
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.connections import (
    mark_m365_connected,
    mark_m365_needs_reconnect,
)
from brokerhooks.store.database import transaction
from tests.connectors.msgraph.conftest import ANN, add_connection, serve_https

pytestmark = pytest.mark.anyio
DISCOVERY = "/.well-known/openid-configuration"


async def test_kept_providers_ask_the_identity_provider_once_per_change(
    engine: Engine,
    vault: Vault,
    broker: BrokerRecord,
    sim: MicrosoftGraphSimulator,
    certificates: LoopbackCertificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates.ca_path))
    paths: list[str] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            paths.append(scope["path"])
        await sim.app(scope, receive, send)

    def discoveries() -> int:
        return sum(path.endswith(DISCOVERY) for path in paths)

    async def use(providers: TokenProviders | None) -> None:
        async with graph_client(
            engine, vault, record.id, transport=sim.transport(), providers=providers
        ) as client:
            await client.list_task_lists()

    with serve_https(recording, certificates) as authority_url:
        record = add_connection(
            engine, vault, broker, authority_url, kind="app_only", mailbox=ANN
        )
        with transaction(engine, write=True) as connection:
            mark_m365_connected(connection, record.id)

        # Without kept providers, every client builds msal's app anew.
        await use(None)
        await use(None)
        assert discoveries() == 2

        providers = TokenProviders(engine, vault)
        try:
            for _ in range(3):
                await use(providers)
            assert discoveries() == 3

            # A change to the connection (here a disconnect) is not served
            # from the kept provider: the next action builds a new one and
            # is refused as the connection now says.
            with transaction(engine, write=True) as connection:
                mark_m365_needs_reconnect(connection, record.id, reason="signed out")
            with pytest.raises(ReconnectRequired, match="signed out"):
                await use(providers)

            with transaction(engine, write=True) as connection:
                mark_m365_connected(connection, record.id)
            await use(providers)
            await use(providers)
            assert discoveries() == 4
        finally:
            providers.close()
