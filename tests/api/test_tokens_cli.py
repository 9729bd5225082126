"""``brokerhooks tokens``: add (the token shown once), list, revoke."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from brokerhooks.cli import EXIT_CODES
from brokerhooks.cli.base import cli
from brokerhooks.config import Settings
from brokerhooks.errors import NotFound
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import api_tokens
from brokerhooks.store.database import transaction
from brokerhooks.store.models import ApiToken
from tests.helpers import add_broker

TOKEN = re.compile(r"bh_[A-Za-z0-9_-]{43}")


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def broker_id(settings: Settings, engine: Engine) -> str:
    return add_broker(engine, Vault(settings.fernet_keys), "acme").id


def test_add_prints_the_token_once_and_stores_its_hash(
    engine: Engine, broker_id: str
) -> None:
    result = run("tokens", "add", "--broker", "acme", "--name", "reports")

    assert result.exit_code == 0, result.output
    [token] = TOKEN.findall(result.output)
    assert "shown only now" in result.output
    with transaction(engine) as connection:
        rows = connection.execute(select(ApiToken.name, ApiToken.token_hash)).all()
    assert [tuple(row) for row in rows] == [
        ("reports", api_tokens.hash_token(Secret(token)))
    ]


def test_add_as_json(broker_id: str) -> None:
    result = run("tokens", "add", "--broker", "acme", "--json")

    document = json.loads(result.output)
    assert document["broker"] == "acme"
    assert document["name"] == "api"
    assert TOKEN.fullmatch(document["token"])
    assert document["revoked_at"] is None


def test_list_never_shows_a_token(broker_id: str) -> None:
    added = run("tokens", "add", "--broker", "acme", "--json")
    token = json.loads(added.output)["token"]

    listed = run("tokens", "list", "--broker", "acme")
    as_json = run("tokens", "list", "--broker", "acme", "--json")

    assert listed.exit_code == as_json.exit_code == 0
    assert "never used" in listed.output
    assert [entry["name"] for entry in json.loads(as_json.output)] == ["api"]
    for output in (listed.output, as_json.output):
        assert token not in output
        assert not TOKEN.search(output)


def test_revoke(engine: Engine, broker_id: str) -> None:
    added = json.loads(run("tokens", "add", "--broker", "acme", "--json").output)

    revoked = run("tokens", "revoke", added["id"])
    again = run("tokens", "revoke", added["id"])
    listed = run("tokens", "list", "--broker", "acme")

    assert revoked.exit_code == again.exit_code == 0
    assert "Revoked" in revoked.output
    assert "revoked" in listed.output
    with transaction(engine) as connection:
        holder = api_tokens.find_token_holder(
            connection, api_tokens.hash_token(Secret(added["token"]))
        )
    assert holder is None


@pytest.mark.parametrize(
    "args",
    [
        ("tokens", "add", "--broker", "nobody"),
        ("tokens", "list", "--broker", "nobody"),
        ("tokens", "revoke", "7d1c2b0e-0000-4000-8000-000000000000"),
    ],
    ids=["add", "list", "revoke"],
)
def test_unknown_broker_or_token_is_not_found(
    broker_id: str, args: tuple[str, ...]
) -> None:
    result = run(*args)

    assert isinstance(result.exception, NotFound)
    assert EXIT_CODES[NotFound] == 3


def test_a_name_is_checked(broker_id: str) -> None:
    result = run("tokens", "add", "--broker", "acme", "--name", " ")

    assert result.exit_code == 2
    assert "1 to 100 characters" in result.output
