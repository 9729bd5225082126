"""SalesTrekker clients for the worker, one per broker, built on demand.

A broker's tenant URL and API key are read from the store when its client
is first needed, and checked again every ``CLIENT_TTL_SECONDS``: a rotated
key or a moved tenant gets a new client without a restart (the old one is
closed once its calls have had time to finish). The workflow cache is
shared by every client of the process.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import Engine

from brokerhooks.config import Settings
from brokerhooks.connectors.salestrekker.cache import WorkflowCache
from brokerhooks.connectors.salestrekker.client import SalesTrekkerClient
from brokerhooks.connectors.salestrekker.tokens import DatabaseTokenStore
from brokerhooks.security.secrets import Vault
from brokerhooks.store.brokers import get_api_key_encrypted, get_broker_by_id
from brokerhooks.store.database import transaction

CLIENT_TTL_SECONDS = 60.0


@dataclass(slots=True)
class _Entry:
    checked_at: float
    fingerprint: tuple[str, str]
    client: SalesTrekkerClient


class SalesTrekkerReaders:
    """A ``ReaderFactory``: the SalesTrekker client of a broker, by id."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._vault = Vault(settings.fernet_keys)
        self._tokens = DatabaseTokenStore(engine, self._vault)
        self._workflows = WorkflowCache(ttl=settings.workflow_cache_seconds)
        self._transport = transport
        self._entries: dict[str, _Entry] = {}

    def __call__(self, broker_id: str) -> SalesTrekkerClient:
        entry = self._entries.get(broker_id)
        now = time.monotonic()
        if entry is not None and now - entry.checked_at < CLIENT_TTL_SECONDS:
            return entry.client

        # A short read of one row, on the event loop; once a minute a broker.
        with transaction(self._engine) as connection:
            broker = get_broker_by_id(connection, broker_id)
            encrypted = get_api_key_encrypted(connection, broker_id)
        fingerprint = (broker.salestrekker_url, encrypted)
        if entry is not None and entry.fingerprint == fingerprint:
            entry.checked_at = now
            return entry.client

        client = SalesTrekkerClient(
            broker_id=broker_id,
            base_url=broker.salestrekker_url,
            api_key=self._vault.decrypt(encrypted),
            tokens=self._tokens,
            timeout=self._settings.salestrekker_timeout_seconds,
            rate_per_second=self._settings.salestrekker_rate_per_second,
            workflow_cache=self._workflows,
            transport=self._transport,
            broker_name=broker.name,
        )
        self._entries[broker_id] = _Entry(now, fingerprint, client)
        if entry is not None:
            self._close_later(entry.client)
        return client

    def _close_later(self, client: SalesTrekkerClient) -> None:
        delay = 2 * self._settings.salestrekker_timeout_seconds
        loop = asyncio.get_running_loop()
        loop.call_later(delay, lambda: loop.create_task(client.aclose()))

    async def aclose(self) -> None:
        """Close every client this factory made."""
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            await entry.client.aclose()
