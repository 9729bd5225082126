"""The outside world as the worker lends it to actions (``actions.base.Services``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
from sqlalchemy import Engine

from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.connectors.msgraph.auth import TokenProviders, graph_client
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.connectors.salestrekker.client import SalesTrekkerClient
from brokerhooks.errors import NotFound
from brokerhooks.pipeline.readers import SalesTrekkerReaders
from brokerhooks.security.secrets import Vault
from brokerhooks.store.connections import get_m365_connection
from brokerhooks.store.database import transaction


class WorkerServices:
    """One broker's connections, for the actions of its runs."""

    def __init__(
        self,
        *,
        engine: Engine,
        vault: Vault,
        settings: Settings,
        broker_id: str,
        readers: SalesTrekkerReaders,
        http: httpx.AsyncClient,
        graph_transport: httpx.AsyncBaseTransport | None = None,
        token_providers: TokenProviders | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self._engine = engine
        self._vault = vault
        self._broker_id = broker_id
        self._readers = readers
        self._graph_transport = graph_transport
        self._token_providers = token_providers

    def graph(self, connection: str) -> AbstractAsyncContextManager[GraphClient]:
        return self._graph(connection)

    @asynccontextmanager
    async def _graph(self, name: str) -> AsyncIterator[GraphClient]:
        def find() -> str:
            with transaction(self._engine) as connection:
                return get_m365_connection(
                    connection, broker_id=self._broker_id, name=name
                ).id

        try:
            connection_id = await asyncio.to_thread(find)
        except NotFound as error:
            raise PermanentError(
                f"{error}; add it with `brokerhooks connections m365 add {name}`"
            ) from None
        async with graph_client(
            self._engine,
            self._vault,
            connection_id,
            transport=self._graph_transport,
            providers=self._token_providers,
        ) as client:
            yield client

    def salestrekker(self) -> SalesTrekkerClient:
        return self._readers(self._broker_id)
