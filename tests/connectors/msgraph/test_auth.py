"""Tokens through real msal against the simulator: sign-in, refresh, reconnect."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import Engine

from brokerhooks.connectors.errors import TransientError
from brokerhooks.connectors.msgraph import auth
from brokerhooks.connectors.msgraph.errors import ReconnectRequired
from brokerhooks.errors import NotFound
from brokerhooks.security.secrets import Vault
from brokerhooks.simulators.msgraph import LoopbackCertificates, MicrosoftGraphSimulator
from brokerhooks.store import connections
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.connections import M365ConnectionRecord
from brokerhooks.store.database import transaction
from tests.connectors.msgraph.conftest import (
    ANN,
    REDIRECT_URI,
    TENANT,
    add_connection,
    get_connection,
    open_sign_in_link,
    path_of,
    stored_token_cache,
)

pytestmark = pytest.mark.anyio


async def sign_in(
    engine: Engine,
    vault: Vault,
    record: M365ConnectionRecord,
    certificates: LoopbackCertificates,
    callback_app: httpx.AsyncClient,
) -> httpx.Response:
    """The whole delegated sign-in: link, browser, callback."""
    link = await asyncio.to_thread(
        auth.begin_sign_in, engine, vault, record.id, redirect_uri=REDIRECT_URI
    )
    back = await asyncio.to_thread(open_sign_in_link, link, certificates)
    assert back.action == REDIRECT_URI
    return await callback_app.post(path_of(back.action), data=back.fields)


@pytest.fixture
async def signed_in(
    engine: Engine,
    vault: Vault,
    broker: BrokerRecord,
    authority_url: str,
    certificates: LoopbackCertificates,
    callback_app: httpx.AsyncClient,
) -> M365ConnectionRecord:
    record = add_connection(engine, vault, broker, authority_url)
    response = await sign_in(engine, vault, record, certificates, callback_app)
    assert response.status_code == 200, response.text
    return get_connection(engine, record.id)


async def list_names(
    engine: Engine, vault: Vault, sim: MicrosoftGraphSimulator, connection_id: str
) -> list[str]:
    async with auth.graph_client(
        engine, vault, connection_id, transport=sim.transport()
    ) as client:
        return [str(item["displayName"]) for item in await client.list_task_lists()]


def grants(sim: MicrosoftGraphSimulator) -> list[str]:
    return [request.grant_type for request in sim.token_requests]


async def test_delegated_sign_in_end_to_end(
    engine: Engine,
    vault: Vault,
    sim: MicrosoftGraphSimulator,
    broker: BrokerRecord,
    authority_url: str,
    certificates: LoopbackCertificates,
    callback_app: httpx.AsyncClient,
) -> None:
    record = add_connection(engine, vault, broker, authority_url)
    link = await asyncio.to_thread(
        auth.begin_sign_in, engine, vault, record.id, redirect_uri=REDIRECT_URI
    )

    query = parse_qs(urlsplit(link).query)
    assert link.startswith(f"{authority_url}/{TENANT}/oauth2/v2.0/authorize?")
    assert query["code_challenge_method"] == ["S256"]
    assert query["response_mode"] == ["form_post"]
    assert query["redirect_uri"] == [REDIRECT_URI]

    back = await asyncio.to_thread(open_sign_in_link, link, certificates)
    page = await callback_app.post(path_of(back.action), data=back.fields)

    assert page.status_code == 200
    assert "now acts as ann.smith@contoso.test" in page.text
    connected = get_connection(engine, record.id)
    assert (connected.status, connected.mailbox) == ("connected", ANN)

    # The token cache is stored, and only encrypted.
    [refresh_token] = list(sim.refresh_tokens)
    blob = stored_token_cache(engine, record.id)
    assert blob is not None
    assert refresh_token not in blob
    assert refresh_token in vault.decrypt(blob).reveal()

    # A Graph call, as the signed-in user, with the token from the cache.
    assert await list_names(engine, vault, sim, record.id) == ["Tasks"]
    [request] = sim.graph_requests()
    assert (request.path, request.mailbox) == ("/v1.0/me/todo/lists", ANN)
    assert grants(sim) == ["authorization_code"]


async def test_the_callback_is_single_use(
    engine: Engine,
    vault: Vault,
    broker: BrokerRecord,
    authority_url: str,
    certificates: LoopbackCertificates,
    callback_app: httpx.AsyncClient,
) -> None:
    record = add_connection(engine, vault, broker, authority_url)
    link = await asyncio.to_thread(
        auth.begin_sign_in, engine, vault, record.id, redirect_uri=REDIRECT_URI
    )
    back = await asyncio.to_thread(open_sign_in_link, link, certificates)

    first = await callback_app.post(path_of(back.action), data=back.fields)
    replayed = await callback_app.post(path_of(back.action), data=back.fields)
    forged = await callback_app.get(
        path_of(back.action), params={"code": "x", "state": "made-up"}
    )

    assert first.status_code == 200
    assert replayed.status_code == 400
    assert "brokerhooks connections m365 connect" in replayed.text
    assert forged.status_code == 400


async def test_a_refused_consent_is_shown_and_noted(
    engine: Engine,
    vault: Vault,
    sim: MicrosoftGraphSimulator,
    broker: BrokerRecord,
    authority_url: str,
    certificates: LoopbackCertificates,
    callback_app: httpx.AsyncClient,
) -> None:
    sim.deny_consent = True
    record = add_connection(engine, vault, broker, authority_url)

    page = await sign_in(engine, vault, record, certificates, callback_app)

    assert page.status_code == 400
    assert "access_denied" in page.text
    assert "connect ann --broker acme" in page.text
    after = get_connection(engine, record.id)
    assert after.status == "pending"
    assert after.last_error is not None
    assert "access_denied" in after.last_error


async def test_refresh_on_use_when_the_access_token_is_near_expiry(
    engine: Engine,
    vault: Vault,
    sim: MicrosoftGraphSimulator,
    signed_in: M365ConnectionRecord,
) -> None:
    """msal refreshes tokens with under five minutes left; the cache is saved."""
    before = stored_token_cache(engine, signed_in.id)
    sim.access_token_lifetime = 3600

    assert await list_names(engine, vault, sim, signed_in.id) == ["Tasks"]
    assert grants(sim) == ["authorization_code"]

    # Tokens from now on live two minutes: each use refreshes.
    sim.access_token_lifetime = 120
    sim.expire_access_tokens()
    await list_names(engine, vault, sim, signed_in.id)
    await list_names(engine, vault, sim, signed_in.id)

    assert grants(sim) == ["authorization_code", "refresh_token", "refresh_token"]
    after = stored_token_cache(engine, signed_in.id)
    assert after is not None
    assert after != before
    newest = list(sim.refresh_tokens)[-1]
    assert newest in vault.decrypt(after).reveal()


async def test_a_refused_token_is_refreshed_once(
    engine: Engine,
    vault: Vault,
    sim: MicrosoftGraphSimulator,
    signed_in: M365ConnectionRecord,
) -> None:
    """A 401 from Graph (token revoked early) forces one refresh, then works."""
    sim.expire_access_tokens()

    assert await list_names(engine, vault, sim, signed_in.id) == ["Tasks"]

    assert [request.status for request in sim.graph_requests()] == [401, 200]
    assert grants(sim) == ["authorization_code", "refresh_token"]


@pytest.mark.parametrize("revoke", [True, False], ids=["revoked", "expired"])
async def test_invalid_grant_marks_the_connection_for_reconnect(
    engine: Engine,
    vault: Vault,
    sim: MicrosoftGraphSimulator,
    signed_in: M365ConnectionRecord,
    certificates: LoopbackCertificates,
    callback_app: httpx.AsyncClient,
    revoke: bool,
) -> None:
    if revoke:
        sim.revoke_refresh_tokens(ANN)
    else:
        sim.fail_token_requests(grant_type="refresh_token", error="invalid_grant")
    sim.expire_access_tokens()

    with pytest.raises(ReconnectRequired) as raised:
        await list_names(engine, vault, sim, signed_in.id)

    message = str(raised.value)
    assert "brokerhooks connections m365 connect ann --broker acme" in message
    assert "invalid_grant" in message
    marked = get_connection(engine, signed_in.id)
    assert marked.status == "needs_reconnect"
    assert marked.last_error is not None
    assert "invalid_grant" in marked.last_error

    # Later uses fail at once, without asking the sign-in service again.
    asked = len(sim.token_requests)
    with pytest.raises(ReconnectRequired):
        await list_names(engine, vault, sim, signed_in.id)
    assert len(sim.token_requests) == asked

    # Signing in again repairs it.
    sim.clear_faults()
    page = await sign_in(engine, vault, signed_in, certificates, callback_app)
    assert page.status_code == 200
    assert get_connection(engine, signed_in.id).status == "connected"
    assert await list_names(engine, vault, sim, signed_in.id) == ["Tasks"]


async def test_an_unreachable_token_endpoint_is_transient(
    engine: Engine,
    vault: Vault,
    sim: MicrosoftGraphSimulator,
    signed_in: M365ConnectionRecord,
) -> None:
    sim.fail_token_requests(
        grant_type="refresh_token",
        error="temporarily_unavailable",
        description="AADSTS90033: A transient error has occurred.",
        status=503,
    )
    sim.expire_access_tokens()

    with pytest.raises(TransientError):
        await list_names(engine, vault, sim, signed_in.id)

    assert get_connection(engine, signed_in.id).status == "connected"


async def test_app_only_connection_acts_on_its_mailbox(
    engine: Engine,
    vault: Vault,
    sim: MicrosoftGraphSimulator,
    broker: BrokerRecord,
    authority_url: str,
) -> None:
    record = add_connection(
        engine, vault, broker, authority_url, kind="app_only", mailbox=ANN
    )

    checked = await asyncio.to_thread(auth.verify_app_only, engine, vault, record.id)
    names = await list_names(engine, vault, sim, record.id)
    await list_names(engine, vault, sim, record.id)

    assert checked.status == "connected"
    assert names == ["Tasks"]
    assert {request.path for request in sim.graph_requests()} == {
        f"/v1.0/users/{ANN}/todo/lists"
    }
    # One token for the check; the calls used the stored cache.
    assert grants(sim) == ["client_credentials"]


async def test_app_only_with_a_wrong_secret_needs_attention(
    engine: Engine,
    vault: Vault,
    sim: MicrosoftGraphSimulator,
    broker: BrokerRecord,
    authority_url: str,
) -> None:
    record = add_connection(
        engine,
        vault,
        broker,
        authority_url,
        kind="app_only",
        mailbox=ANN,
        client_secret="not-the-secret",
    )

    with pytest.raises(ReconnectRequired) as raised:
        await asyncio.to_thread(auth.verify_app_only, engine, vault, record.id)

    assert "set-secret ann --broker acme" in str(raised.value)
    assert "invalid_client" in str(raised.value)
    assert "not-the-secret" not in str(raised.value)
    assert get_connection(engine, record.id).status == "needs_reconnect"


async def test_no_graph_client_before_anyone_signed_in(
    engine: Engine,
    vault: Vault,
    sim: MicrosoftGraphSimulator,
    broker: BrokerRecord,
    authority_url: str,
) -> None:
    record = add_connection(engine, vault, broker, authority_url)

    with pytest.raises(ReconnectRequired, match="nobody has signed in"):
        await list_names(engine, vault, sim, record.id)


async def test_a_live_token_is_reused_without_the_store(
    engine: Engine,
    vault: Vault,
    signed_in: M365ConnectionRecord,
) -> None:
    tokens = auth.ConnectionTokens(engine, vault, signed_in.id)
    try:
        first = await tokens()
        with transaction(engine, write=True) as connection:
            connections.remove_m365_connection(
                connection, broker_id=signed_in.broker_id, name=signed_in.name
            )

        again = await tokens()
        with pytest.raises(NotFound):
            await tokens(force_refresh=True)
    finally:
        tokens.close()

    assert again == first
