"""``brokerhooks connections m365``: add, connect, list, set-secret, remove."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from brokerhooks.cli.base import cli
from brokerhooks.errors import Conflict, NotFound
from brokerhooks.security.secrets import Vault
from brokerhooks.simulators.msgraph import LoopbackCertificates, MicrosoftGraphSimulator
from brokerhooks.store import connections
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.database import transaction
from tests.connectors.msgraph.conftest import (
    ANN,
    CLIENT_ID,
    CLIENT_SECRET,
    TENANT,
    open_sign_in_link,
    path_of,
)


def run(*args: str, secret: str | None = None) -> Result:
    return CliRunner().invoke(
        cli, ["connections", "m365", *args], input=f"{secret}\n" if secret else None
    )


def add(authority_url: str, *extra: str, name: str = "ann") -> Result:
    return run(
        "add",
        name,
        "--broker",
        "acme",
        "--tenant",
        TENANT,
        "--client-id",
        CLIENT_ID,
        "--authority-url",
        authority_url,
        "--graph-url",
        authority_url,
        *extra,
        secret=CLIENT_SECRET,
    )


def listed() -> list[dict[str, object]]:
    result = run("list", "--broker", "acme", "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, object]] = json.loads(result.output)
    return rows


@pytest.mark.usefixtures("broker")
def test_add_keeps_the_secret_encrypted(
    engine: Engine, vault: Vault, authority_url: str
) -> None:
    result = add(authority_url, "--kind", "delegated")

    assert result.exit_code == 0, result.output
    assert (
        "redirect URI to register: http://127.0.0.1:8000/connections/m365/callback"
        in (result.output)
    )
    assert CLIENT_SECRET not in result.output
    [row] = listed()
    assert (row["kind"], row["status"], row["mailbox"]) == (
        "delegated",
        "pending",
        None,
    )
    with transaction(engine) as connection:
        stored = connections.get_m365_secrets(connection, str(row["id"]))
    assert CLIENT_SECRET not in stored.client_secret_encrypted
    assert vault.decrypt(stored.client_secret_encrypted).reveal() == CLIENT_SECRET


@pytest.mark.usefixtures("broker")
def test_add_refuses_what_cannot_work(authority_url: str) -> None:
    assert add(authority_url, "--kind", "delegated").exit_code == 0

    duplicate = add(authority_url, "--kind", "delegated")
    no_mailbox = add(authority_url, "--kind", "app-only", name="robot")
    plain_http = run(
        "add",
        "x",
        "--broker",
        "acme",
        "--kind",
        "delegated",
        "--tenant",
        TENANT,
        "--client-id",
        CLIENT_ID,
        "--authority-url",
        "http://login.example.com",
        secret=CLIENT_SECRET,
    )

    assert isinstance(duplicate.exception, Conflict)
    assert no_mailbox.exit_code == 2
    assert "--mailbox" in no_mailbox.output
    assert plain_http.exit_code == 2
    assert "https" in plain_http.output


@pytest.mark.anyio
@pytest.mark.usefixtures("broker")
async def test_connect_delegated_prints_a_link_the_callback_completes(
    authority_url: str,
    certificates: LoopbackCertificates,
    callback_app: httpx.AsyncClient,
) -> None:
    assert add(authority_url, "--kind", "delegated").exit_code == 0

    result = await asyncio.to_thread(run, "connect", "ann", "--broker", "acme")

    assert result.exit_code == 0, result.output
    match = re.search(r"(https://\S+/oauth2/v2\.0/authorize\?\S+)", result.output)
    assert match is not None
    back = await asyncio.to_thread(open_sign_in_link, match.group(1), certificates)
    page = await callback_app.post(path_of(back.action), data=back.fields)
    assert page.status_code == 200
    [row] = listed()
    assert (row["status"], row["mailbox"]) == ("connected", ANN)


@pytest.mark.usefixtures("broker")
def test_connect_app_only_checks_the_credentials(
    sim: MicrosoftGraphSimulator, authority_url: str
) -> None:
    assert add(authority_url, "--kind", "app-only", "--mailbox", ANN).exit_code == 0
    sim.add_app(CLIENT_ID, "a-rotated-secret")

    refused = run("connect", "ann", "--broker", "acme")
    assert refused.exit_code == 1
    assert "set-secret ann --broker acme" in refused.output
    assert listed()[0]["status"] == "needs_reconnect"

    assert (
        run(
            "set-secret", "ann", "--broker", "acme", secret="a-rotated-secret"
        ).exit_code
        == 0
    )
    connected = run("connect", "ann", "--broker", "acme")

    assert connected.exit_code == 0, connected.output
    assert f"acting on {ANN}" in connected.output
    assert listed()[0]["status"] == "connected"


def test_list_and_remove(broker: BrokerRecord, authority_url: str) -> None:
    assert add(authority_url, "--kind", "delegated").exit_code == 0
    assert (
        add(
            authority_url, "--kind", "app-only", "--mailbox", ANN, name="robot"
        ).exit_code
        == 0
    )

    table = run("list")
    removed = run("remove", "robot", "--broker", "acme")
    missing = run("remove", "robot", "--broker", "acme")

    assert table.output.splitlines() == [
        "acme\tann\tdelegated\tpending\t-",
        f"acme\trobot\tapp-only\tpending\t{ANN}",
    ]
    assert removed.exit_code == 0
    assert [row["name"] for row in listed()] == ["ann"]
    assert isinstance(missing.exception, NotFound)
