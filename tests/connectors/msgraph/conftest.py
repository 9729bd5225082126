"""Fixtures for the Graph connector: a simulated tenant, served two ways.

Graph calls reach the simulator in-process (``sim.transport()``). msal
reaches its identity endpoints over real HTTPS on loopback, with a
certificate from a throwaway CA that requests is told to trust through
``REQUESTS_CA_BUNDLE``: msal runs unchanged, as it would against Entra ID.
"""

from __future__ import annotations

import html
import re
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.routing import Route

from brokerhooks.config import Settings
from brokerhooks.connectors.msgraph.auth import CALLBACK_PATH
from brokerhooks.connectors.msgraph.callback import m365_callback
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.simulators.msgraph import (
    LoopbackCertificates,
    MicrosoftGraphSimulator,
    make_loopback_certificates,
)
from brokerhooks.store import connections
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.connections import M365ConnectionRecord
from brokerhooks.store.database import transaction
from tests.helpers import add_broker
from tests.servers import free_port

TENANT = "9b1f2c3d-0000-4000-8000-00000000c0de"
CLIENT_ID = "6a1c0de0-0000-4000-8000-000000000001"
CLIENT_SECRET = "sim-client-secret-value-0123456789"
ANN = "ann.smith@contoso.test"
REDIRECT_URI = "https://brokerhooks.test" + CALLBACK_PATH


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCertificates:
    return make_loopback_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sim() -> MicrosoftGraphSimulator:
    sim = MicrosoftGraphSimulator(tenant_id=TENANT)
    sim.add_app(CLIENT_ID, CLIENT_SECRET)
    sim.add_user(ANN, "Ann Smith")
    return sim


@contextmanager
def serve_https(app: Any, certificates: LoopbackCertificates) -> Iterator[str]:
    """Run an ASGI app with uvicorn over TLS in a thread; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        ssl_certfile=str(certificates.cert_path),
        ssl_keyfile=str(certificates.key_path),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the simulator did not start")
        time.sleep(0.01)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def authority_url(
    sim: MicrosoftGraphSimulator,
    certificates: LoopbackCertificates,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The simulator's identity provider over HTTPS, trusted by requests."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates.ca_path))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(certificates.ca_path))
    with serve_https(sim.app, certificates) as base:
        yield base


@pytest.fixture
def vault(settings: Settings) -> Vault:
    return Vault(settings.fernet_keys)


@pytest.fixture
def broker(engine: Engine, vault: Vault) -> BrokerRecord:
    return add_broker(engine, vault, name="acme")


def add_connection(
    engine: Engine,
    vault: Vault,
    broker: BrokerRecord,
    authority_url: str,
    *,
    kind: str = "delegated",
    name: str = "ann",
    mailbox: str | None = None,
    client_secret: str = CLIENT_SECRET,
) -> M365ConnectionRecord:
    with transaction(engine, write=True) as connection:
        return connections.create_m365_connection(
            connection,
            broker_id=broker.id,
            name=name,
            kind=kind,
            tenant_id=TENANT,
            client_id=CLIENT_ID,
            client_secret_encrypted=vault.encrypt(Secret(client_secret)),
            authority_url=authority_url,
            graph_url=authority_url,
            mailbox=mailbox,
        )


def get_connection(engine: Engine, connection_id: str) -> M365ConnectionRecord:
    with transaction(engine) as connection:
        return connections.get_m365_connection_by_id(connection, connection_id)


def stored_token_cache(engine: Engine, connection_id: str) -> str | None:
    """The encrypted token cache as stored."""
    with transaction(engine) as connection:
        secrets = connections.get_m365_secrets(connection, connection_id)
    return secrets.token_cache_encrypted


@dataclass(frozen=True)
class BrowserReturn:
    """Where the browser goes back after sign-in, and what it carries."""

    action: str
    fields: dict[str, str]


def open_sign_in_link(
    auth_uri: str, certificates: LoopbackCertificates
) -> BrowserReturn:
    """Do what a browser does with the link: read the auto-submitting form."""
    context = ssl.create_default_context(cafile=str(certificates.ca_path))
    response = httpx.get(auth_uri, verify=context)
    response.raise_for_status()
    action = re.search(r'action="([^"]+)"', response.text)
    assert action is not None, response.text
    fields = re.findall(r'name="([^"]+)" value="([^"]*)"', response.text)
    return BrowserReturn(
        action=html.unescape(action.group(1)),
        fields={name: html.unescape(value) for name, value in fields},
    )


@pytest.fixture
async def callback_app(
    engine: Engine, vault: Vault
) -> AsyncIterator[httpx.AsyncClient]:
    """The callback route on an app of its own, called in-process."""
    app = Starlette(
        routes=[Route(CALLBACK_PATH, m365_callback, methods=["GET", "POST"])]
    )
    app.state.runtime = SimpleNamespace(engine=engine, vault=vault)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="https://brokerhooks.test"
    ) as client:
        yield client


def path_of(url: str) -> str:
    return httpx.URL(url).path
