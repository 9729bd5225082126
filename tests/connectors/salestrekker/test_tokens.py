"""Where session tokens are kept: in memory, or encrypted in the store."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine

from brokerhooks.config import Settings
from brokerhooks.connectors.salestrekker import (
    DatabaseTokenStore,
    MemoryTokenStore,
    TokenStore,
)
from brokerhooks.connectors.salestrekker.tokens import token_expiry
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store.database import transaction
from brokerhooks.store.tokens import load_token
from tests.connectors.salestrekker.conftest import API_KEY, ClientFactory
from tests.helpers import add_broker

pytestmark = pytest.mark.anyio

EXPIRES = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def vault(settings: Settings) -> Vault:
    return Vault(settings.fernet_keys)


@pytest.fixture
def broker_id(engine: Engine, vault: Vault) -> str:
    return add_broker(engine, vault, name="acme", api_key=API_KEY).id


@pytest.fixture(params=["memory", "database"])
def store(request: pytest.FixtureRequest, engine: Engine, vault: Vault) -> TokenStore:
    if request.param == "memory":
        return MemoryTokenStore()
    return DatabaseTokenStore(engine, vault)


async def test_store_round_trip(store: TokenStore, broker_id: str) -> None:
    assert await store.load(broker_id) is None

    await store.save(broker_id, Secret("first"), EXPIRES)
    await store.save(broker_id, Secret("second"), EXPIRES + timedelta(days=1))

    assert await store.load(broker_id) == (
        Secret("second"),
        EXPIRES + timedelta(days=1),
    )
    await store.discard(broker_id)
    assert await store.load(broker_id) is None
    await store.discard(broker_id)  # nothing left: no error


async def test_database_keeps_the_token_encrypted(
    engine: Engine, vault: Vault, broker_id: str
) -> None:
    await DatabaseTokenStore(engine, vault).save(broker_id, Secret("tok-123"), EXPIRES)

    with transaction(engine) as connection:
        stored = load_token(connection, broker_id)

    assert stored is not None
    encrypted, expires_at = stored
    assert "tok-123" not in encrypted
    assert vault.decrypt(encrypted) == Secret("tok-123")
    assert expires_at == EXPIRES


async def test_token_no_key_decrypts_is_treated_as_absent(
    engine: Engine, vault: Vault, broker_id: str
) -> None:
    await DatabaseTokenStore(engine, vault).save(broker_id, Secret("t"), EXPIRES)
    other = Vault([Fernet.generate_key()])

    assert await DatabaseTokenStore(engine, other).load(broker_id) is None


async def test_client_token_survives_in_the_store(
    simulator: SalesTrekkerSimulator,
    make_client: ClientFactory,
    engine: Engine,
    vault: Vault,
    broker_id: str,
) -> None:
    await make_client(
        broker_id=broker_id, tokens=DatabaseTokenStore(engine, vault)
    ).fetch_contact(simulator.JANE_ID)
    # A new store object and client: as after a restart.
    await make_client(
        broker_id=broker_id, tokens=DatabaseTokenStore(engine, vault)
    ).fetch_contact(simulator.JANE_ID)

    assert simulator.requests["Authenticate"] == 1
    loaded = await DatabaseTokenStore(engine, vault).load(broker_id)
    assert loaded is not None
    assert simulator.tokens.verify(loaded[0].reveal()) is not None


async def test_client_discards_a_refused_token_from_the_store(
    simulator: SalesTrekkerSimulator,
    make_client: ClientFactory,
    engine: Engine,
    vault: Vault,
    broker_id: str,
) -> None:
    store = DatabaseTokenStore(engine, vault)
    await store.save(broker_id, Secret("revoked-long-ago"), EXPIRES)

    await make_client(broker_id=broker_id, tokens=store).fetch_contact(
        simulator.JANE_ID
    )

    loaded = await store.load(broker_id)
    assert loaded is not None
    assert loaded[0] != Secret("revoked-long-ago")
    assert simulator.requests["Contact"] == 2


def _jwt(claims: dict[str, object]) -> Secret:
    def part(value: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return Secret(f"{part({'alg': 'HS256'})}.{part(claims)}.signature")


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (_jwt({"exp": 1_900_000_000}), datetime.fromtimestamp(1_900_000_000, UTC)),
        (_jwt({"iat": 1}), datetime(2030, 1, 15, tzinfo=UTC)),
        (Secret("opaque-token"), datetime(2030, 1, 15, tzinfo=UTC)),
        (Secret("a.!!!.c"), datetime(2030, 1, 15, tzinfo=UTC)),
    ],
    ids=["jwt-exp", "jwt-without-exp", "opaque", "bad-base64"],
)
def test_expiry_is_read_from_the_jwt_or_assumed_14_days(
    token: Secret, expected: datetime
) -> None:
    assert token_expiry(token, datetime(2030, 1, 1, tzinfo=UTC)) == expected
