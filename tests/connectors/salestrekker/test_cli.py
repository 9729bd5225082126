"""``brokerhooks salestrekker check`` against a simulator over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from brokerhooks.cli.base import cli
from brokerhooks.config import Settings
from brokerhooks.security.secrets import Vault
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store.database import transaction
from brokerhooks.store.tokens import load_token
from tests.connectors.salestrekker.conftest import API_KEY
from tests.helpers import add_broker
from tests.servers import serve_in_thread


@pytest.fixture
def tenant_url(simulator: SalesTrekkerSimulator) -> Iterator[str]:
    with serve_in_thread(simulator.app) as url:
        yield url


def check(*extra: str) -> Result:
    return CliRunner().invoke(
        cli, ["salestrekker", "check", "--broker", "acme", *extra]
    )


def test_check_passes_when_the_schema_fits(
    settings: Settings, engine: Engine, tenant_url: str
) -> None:
    vault = Vault(settings.fernet_keys)
    broker = add_broker(engine, vault, api_key=API_KEY, salestrekker_url=tenant_url)

    result = check()

    assert result.exit_code == 0, result.output
    assert "fits the bundled one" in result.output
    with transaction(engine) as connection:
        assert load_token(connection, broker.id) is not None, "token kept"


def test_check_fails_on_a_breaking_change(
    settings: Settings,
    engine: Engine,
    tenant_url: str,
    simulator: SalesTrekkerSimulator,
) -> None:
    add_broker(
        engine,
        Vault(settings.fernet_keys),
        api_key=API_KEY,
        salestrekker_url=tenant_url,
    )
    simulator.remove_field("Query", "note")

    result = check()

    assert result.exit_code == 1
    assert "Field Query.note was removed" in result.output
    assert "  Note\n" in result.output


def test_check_as_json(
    settings: Settings,
    engine: Engine,
    tenant_url: str,
    simulator: SalesTrekkerSimulator,
) -> None:
    add_broker(
        engine,
        Vault(settings.fernet_keys),
        api_key=API_KEY,
        salestrekker_url=tenant_url,
    )
    simulator.remove_field("Ticket", "dueDate")

    result = check("--json")

    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["broker"] == "acme"
    assert document["ok"] is False
    assert document["invalid_operations"][0]["name"] == "Ticket"
    assert document["invalid_operations"][0]["fallback"] == "TicketSeen"


def test_check_with_a_refused_key_says_how_to_rotate_it(
    settings: Settings, engine: Engine, tenant_url: str
) -> None:
    wrong = "ffffffffffffffffffffffffffffffffffffffff"
    add_broker(
        engine, Vault(settings.fernet_keys), api_key=wrong, salestrekker_url=tenant_url
    )

    result = check()

    assert result.exit_code == 1
    assert "brokerhooks brokers rotate-key acme" in result.output
    assert wrong not in result.output


def test_check_of_an_unknown_broker_is_not_found(
    settings: Settings, engine: Engine
) -> None:
    result = CliRunner().invoke(cli, ["salestrekker", "check", "--broker", "nobody"])

    assert "no broker named 'nobody'" in str(result.exception)
