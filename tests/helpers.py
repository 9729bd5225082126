"""Small helpers shared by tests."""

from __future__ import annotations

from sqlalchemy import Engine

from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import brokers
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.database import transaction


def add_broker(
    engine: Engine,
    vault: Vault,
    name: str = "acme",
    api_key: str = "test-api-key-acme-0123456789abcdef",
    salestrekker_url: str = "https://acme.salestrekker.com",
) -> BrokerRecord:
    key = Secret(api_key)
    with transaction(engine, write=True) as connection:
        return brokers.create_broker(
            connection,
            name=name,
            salestrekker_url=salestrekker_url,
            api_key_encrypted=vault.encrypt(key),
            api_key_hash=vault.lookup_hash(key),
        )
