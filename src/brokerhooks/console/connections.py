"""Connections: the broker's SalesTrekker key and Microsoft 365 sign-ins.

The SalesTrekker API key is never shown: only its first four characters.
"Send a test event" posts a delivery to this app's own webhook route,
in-process, with the stored key, so it runs the same code as
SalesTrekker's deliveries. Its event type, ``consoleTest``, is not one of
SalesTrekker's, so it is stored as unsupported and no rule runs on it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from sqlalchemy import Connection
from starlette.responses import RedirectResponse, Response

from brokerhooks.connectors.errors import ConnectorError
from brokerhooks.connectors.msgraph import auth
from brokerhooks.connectors.salestrekker.client import SalesTrekkerClient
from brokerhooks.connectors.salestrekker.drift import DriftReport, compare
from brokerhooks.connectors.salestrekker.operations import bundled_schema
from brokerhooks.connectors.salestrekker.tokens import DatabaseTokenStore
from brokerhooks.console.web import Form, Page
from brokerhooks.errors import Conflict, NotFound
from brokerhooks.security.secrets import Secret
from brokerhooks.store import brokers as broker_store
from brokerhooks.store import connections as store
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.connections import M365ConnectionRecord
from brokerhooks.store.models import M365_APP_ONLY, M365_DELEGATED

log = structlog.get_logger("brokerhooks.console")

AUTHORITY_URL = "https://login.microsoftonline.com"
GRAPH_URL = "https://graph.microsoft.com"
TEST_EVENT = "consoleTest"
KINDS = {M365_DELEGATED: "delegated", M365_APP_ONLY: "app-only"}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def webhook_url(page: Page) -> str:
    return page.settings.public_url.rstrip("/") + "/hooks/salestrekker"


def masked(key: Secret) -> str:
    """The first four characters of a key, then dots; only dots if short."""
    value = key.reveal()
    return (value[:4] if len(value) >= 12 else "") + "••••"


async def connections(
    page: Page,
    *,
    error: str | None = None,
    drift: DriftReport | None = None,
    drift_error: str | None = None,
    status: int = 200,
) -> Response:
    broker_id = page.require_broker()
    vault = page.runtime.vault

    def load(connection: Connection) -> dict[str, Any]:
        broker = broker_store.get_broker_by_id(connection, broker_id)
        encrypted = broker_store.get_api_key_encrypted(connection, broker_id)
        return {
            "broker": broker,
            "key": masked(vault.decrypt(encrypted)),
            "m365": store.list_m365_connections(connection, broker_id=broker_id),
        }

    data = await page.read(load)
    return page.render(
        "connections.html",
        status=status,
        section="connections",
        webhook_url=webhook_url(page),
        kinds=KINDS,
        error=error,
        drift=drift,
        drift_error=drift_error,
        **data,
    )


async def connections_page(page: Page) -> Response:
    return await connections(page)


# SalesTrekker.


async def rotate_key(page: Page) -> Response:
    broker_id = page.require_broker()
    value = page.form.get("new_key").strip()
    problem = _key_problem(value)
    if problem is not None:
        return await connections(page, error=problem, status=400)
    key = Secret(value)
    vault = page.runtime.vault

    def rotate(connection: Connection) -> BrokerRecord:
        broker = broker_store.get_broker_by_id(connection, broker_id)
        return broker_store.set_api_key(
            connection,
            broker.name,
            api_key_encrypted=vault.encrypt(key),
            api_key_hash=vault.lookup_hash(key),
        )

    try:
        broker = await page.write(rotate)
    except Conflict:
        return await connections(
            page,
            error="That API key belongs to another broker; check that you copied "
            "this broker's key from SalesTrekker.",
            status=409,
        )
    log.info("console_key_rotated", broker=broker.name, user=page.signed_in.user.id)
    return page.redirect("/connections", "key-rotated")


def _key_problem(value: str) -> str | None:
    if not value:
        return "Paste the new SalesTrekker API key."
    if any(character.isspace() for character in value):
        return "An API key has no spaces; paste only the key."
    if len(value) > 500:
        return "That is too long for an API key; paste only the key."
    return None


async def send_test_event(page: Page) -> Response:
    """Deliver a ``consoleTest`` event to this app's webhook route."""
    broker_id = page.require_broker()
    vault = page.runtime.vault
    encrypted = await page.read(
        lambda connection: broker_store.get_api_key_encrypted(connection, broker_id)
    )
    key = vault.decrypt(encrypted)
    transport = httpx.ASGITransport(app=page.request.app, client=("127.0.0.1", 0))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://console.internal"
    ) as client:
        response = await client.post(
            "/hooks/salestrekker",
            json={"event": TEST_EVENT, "id": str(uuid.uuid4())},
            headers={"Authorization": f"Salestrekker {key.reveal()}"},
        )
    answer = response.json() if response.content else {}
    if response.status_code != 200:
        detail = answer.get("detail") or answer.get("error") or response.reason_phrase
        return await connections(
            page,
            error=f"The test event was refused ({response.status_code}): {detail}.",
            status=502,
        )
    return page.redirect("/connections", "test-sent", event=answer.get("event"))


async def check_drift(page: Page) -> Response:
    """Compare the live SalesTrekker schema with the one brokerhooks expects."""
    broker_id = page.require_broker()
    runtime = page.runtime
    settings = page.settings

    def load(connection: Connection) -> tuple[BrokerRecord, str]:
        broker = broker_store.get_broker_by_id(connection, broker_id)
        return broker, broker_store.get_api_key_encrypted(connection, broker_id)

    broker, encrypted = await page.read(load)
    try:
        async with SalesTrekkerClient(
            broker_id=broker.id,
            broker_name=broker.name,
            base_url=broker.salestrekker_url,
            api_key=runtime.vault.decrypt(encrypted),
            tokens=DatabaseTokenStore(runtime.engine, runtime.vault),
            timeout=settings.salestrekker_timeout_seconds,
            rate_per_second=settings.salestrekker_rate_per_second,
        ) as client:
            live = await client.introspect()
    except ConnectorError as error:
        return await connections(page, drift_error=str(error))
    report = await asyncio.to_thread(compare, bundled_schema(), live)
    return await connections(page, drift=report)


# Microsoft 365.


async def new_m365(page: Page) -> Response:
    page.require_broker()
    return _m365_form(page, _defaults())


def _defaults() -> dict[str, str]:
    return {
        "name": "",
        "kind": M365_DELEGATED,
        "tenant": "",
        "client_id": "",
        "mailbox": "",
        "authority_url": AUTHORITY_URL,
        "graph_url": GRAPH_URL,
    }


def _m365_form(
    page: Page,
    values: dict[str, str],
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "m365_new.html",
        status=status,
        section="connections",
        values=values,
        problems=problems or {},
        kinds=KINDS,
        redirect_uri=page.settings.public_url.rstrip("/") + auth.CALLBACK_PATH,
    )


async def add_m365(page: Page) -> Response:
    broker_id = page.require_broker()
    values, problems = _read_m365(page.form)
    secret = Secret(page.form.get("client_secret").strip())
    if not secret:
        message = "Paste the app registration's client secret."
        problems["client_secret"] = message
    if problems:
        return _m365_form(page, values, problems, status=400)
    vault = page.runtime.vault

    def add(connection: Connection) -> M365ConnectionRecord:
        return store.create_m365_connection(
            connection,
            broker_id=broker_id,
            name=values["name"],
            kind=values["kind"],
            tenant_id=values["tenant"],
            client_id=values["client_id"],
            client_secret_encrypted=vault.encrypt(secret),
            authority_url=values["authority_url"],
            graph_url=values["graph_url"],
            mailbox=values["mailbox"] or None,
        )

    try:
        record = await page.write(add)
    except Conflict:
        problems["name"] = "This broker already has a connection with this name."
        return _m365_form(page, values, problems, status=409)
    return page.redirect("/connections", "m365-added", name=record.name)


def _read_m365(form: Form) -> tuple[dict[str, str], dict[str, str]]:
    values = {name: form.get(name).strip() for name in _defaults()}
    problems: dict[str, str] = {}
    for name, label in (
        ("name", "A name"),
        ("tenant", "The tenant id"),
        ("client_id", "The client id"),
    ):
        value = values[name]
        if not value or len(value) > 100 or any(c.isspace() for c in value):
            problems[name] = f"{label} has 1 to 100 characters and no spaces."
    if values["kind"] not in KINDS:
        problems["kind"] = "Choose delegated or app-only."
    if values["kind"] == M365_APP_ONLY and not values["mailbox"]:
        problems["mailbox"] = (
            "An app-only connection needs the mailbox to act on (a user's email)."
        )
    for name in ("authority_url", "graph_url"):
        url, problem = _https_url(values[name], https_only=name == "authority_url")
        values[name] = url
        if problem:
            problems[name] = problem
    return values, problems


def _https_url(value: str, *, https_only: bool) -> tuple[str, str | None]:
    parts = urlsplit(value)
    loopback = parts.hostname in _LOOPBACK
    if not parts.hostname or not (
        parts.scheme == "https"
        or (parts.scheme == "http" and loopback and not https_only)
    ):
        return value, "Give an https:// address."
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/"), None


async def _visible_connection(page: Page) -> M365ConnectionRecord:
    connection_id = page.request.path_params["connection_id"]
    record = await page.read(
        lambda connection: store.get_m365_connection_by_id(connection, connection_id)
    )
    if not page.signed_in.can_see(record.broker_id):
        raise NotFound(f"no Microsoft 365 connection {connection_id} for this viewer")
    return record


async def connect_m365(page: Page) -> Response:
    """Send the browser to Microsoft's sign-in, or check app-only credentials."""
    record = await _visible_connection(page)
    runtime = page.runtime
    try:
        if record.kind == M365_DELEGATED:
            link = await asyncio.to_thread(
                auth.begin_sign_in,
                runtime.engine,
                runtime.vault,
                record.id,
                redirect_uri=page.settings.public_url.rstrip("/") + auth.CALLBACK_PATH,
            )
            return RedirectResponse(link, status_code=303)
        await asyncio.to_thread(
            auth.verify_app_only, runtime.engine, runtime.vault, record.id
        )
    except ConnectorError as error:
        return await connections(
            page,
            error=f"Microsoft 365 connection {record.name} is not connected: {error}",
            status=502,
        )
    return page.redirect("/connections", "m365-connected", name=record.name)


async def disconnect_form(page: Page) -> Response:
    record = await _visible_connection(page)
    return page.render("m365_disconnect.html", section="connections", record=record)


async def disconnect(page: Page) -> Response:
    record = await _visible_connection(page)
    await page.write(
        lambda connection: store.remove_m365_connection(
            connection, broker_id=record.broker_id, name=record.name
        )
    )
    log.info(
        "console_m365_removed", connection=record.name, user=page.signed_in.user.id
    )
    return page.redirect("/connections", "m365-removed", name=record.name)
