"""``brokerhooks connections m365``: add, connect, list, set-secret, remove."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import click

from brokerhooks.cli.base import Context, echo_json, pass_context, read_secret_line
from brokerhooks.connectors.errors import ConnectorError
from brokerhooks.connectors.msgraph import auth
from brokerhooks.connectors.msgraph.subscriptions import SubscriptionService
from brokerhooks.security.secrets import Secret
from brokerhooks.store import brokers
from brokerhooks.store import connections as store
from brokerhooks.store.connections import M365ConnectionRecord
from brokerhooks.store.models import M365_APP_ONLY, M365_DELEGATED

AUTHORITY_URL = "https://login.microsoftonline.com"
GRAPH_URL = "https://graph.microsoft.com"
KINDS = {"delegated": M365_DELEGATED, "app-only": M365_APP_ONLY}
T = TypeVar("T")


def _validate_url(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urlsplit(value.strip())
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise click.BadParameter(
            f"{value!r} is not an https URL (plain http only on loopback)"
        )
    if param.name == "authority_url" and parts.scheme != "https":
        raise click.BadParameter("msal accepts only https authorities")
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def _validate_text(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip()
    if not value or len(value) > 100 or any(c.isspace() for c in value):
        raise click.BadParameter(f"{param.name} has 1 to 100 characters, no spaces")
    return value


def redirect_uri(context: Context) -> str:
    return context.settings.public_url.rstrip("/") + auth.CALLBACK_PATH


def _describe(record: M365ConnectionRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "broker": record.broker_name,
        "name": record.name,
        "kind": "app-only" if record.kind == M365_APP_ONLY else "delegated",
        "tenant_id": record.tenant_id,
        "client_id": record.client_id,
        "authority_url": record.authority_url,
        "graph_url": record.graph_url,
        "mailbox": record.mailbox,
        "status": record.status,
        "last_error": record.last_error,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def _find(context: Context, name: str, broker: str) -> M365ConnectionRecord:
    with context.transaction() as connection:
        broker_id = brokers.get_broker(connection, broker).id
        return store.get_m365_connection(connection, broker_id=broker_id, name=name)


@click.group()
def connections() -> None:
    """Connections: stored credentials for outside systems."""


@connections.group()
def m365() -> None:
    """Microsoft 365 (To Do, Outlook, OneDrive) through Microsoft Graph."""


broker_option = click.option("--broker", required=True, help="The broker's name.")


@m365.command("add")
@click.argument("name", callback=_validate_text)
@broker_option
@click.option(
    "--kind",
    type=click.Choice(sorted(KINDS)),
    required=True,
    help="delegated: act as a person who signs in; app-only: act on --mailbox.",
)
@click.option(
    "--tenant", required=True, callback=_validate_text, help="Entra ID tenant id."
)
@click.option(
    "--client-id",
    required=True,
    callback=_validate_text,
    help="The app registration's application (client) id.",
)
@click.option("--mailbox", help="User id or UPN to act on (required for app-only).")
@click.option(
    "--authority-url",
    default=AUTHORITY_URL,
    show_default=True,
    callback=_validate_url,
    help="Where people sign in (a simulator's address in tests).",
)
@click.option(
    "--graph-url",
    default=GRAPH_URL,
    show_default=True,
    callback=_validate_url,
    help="Microsoft Graph's address (a simulator's in tests).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def add(
    context: Context,
    name: str,
    broker: str,
    kind: str,
    tenant: str,
    client_id: str,
    mailbox: str | None,
    authority_url: str,
    graph_url: str,
    as_json: bool,
) -> None:
    """Add a connection; the client secret is read from standard input."""
    if kind == "app-only" and not mailbox:
        raise click.UsageError("an app-only connection needs --mailbox")
    secret = Secret(read_secret_line("client secret"))
    with context.transaction(write=True) as connection:
        broker_id = brokers.get_broker(connection, broker).id
        record = store.create_m365_connection(
            connection,
            broker_id=broker_id,
            name=name,
            kind=KINDS[kind],
            tenant_id=tenant,
            client_id=client_id,
            client_secret_encrypted=context.vault.encrypt(secret),
            authority_url=authority_url,
            graph_url=graph_url,
            mailbox=mailbox.strip() if mailbox else None,
        )
    if as_json:
        echo_json(_describe(record))
        return
    click.echo(f"Added Microsoft 365 connection {record.name} ({kind})")
    if record.kind == M365_DELEGATED:
        click.echo(f"  redirect URI to register: {redirect_uri(context)}")
    click.echo(f"Next: brokerhooks connections m365 connect {name} --broker {broker}")


@m365.command("connect")
@click.argument("name")
@broker_option
@pass_context
def connect(context: Context, name: str, broker: str) -> None:
    """Sign in (delegated: prints the link), or check app-only credentials."""
    record = _find(context, name, broker)
    if record.kind == M365_DELEGATED:
        link = _guarded(
            lambda: auth.begin_sign_in(
                context.engine,
                context.vault,
                record.id,
                redirect_uri=redirect_uri(context),
            )
        )
        click.echo("Open this link and sign in as the Microsoft 365 user to act as:")
        click.echo(f"  {link}")
        click.echo(
            "The connection is made when the browser comes back to "
            f"{redirect_uri(context)}."
        )
        return
    record = _guarded(
        lambda: auth.verify_app_only(context.engine, context.vault, record.id)
    )
    click.echo(f"Connected {record.name}: app-only, acting on {record.mailbox}.")


def _guarded(call: Callable[[], T]) -> T:
    """Run a connector call; its error becomes a message and exit code 1."""
    try:
        return call()
    except ConnectorError as error:
        raise click.ClickException(str(error)) from None


@m365.command("list")
@click.option("--broker", help="Only this broker's connections.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_(context: Context, broker: str | None, as_json: bool) -> None:
    """List Microsoft 365 connections and their status."""
    with context.transaction() as connection:
        broker_id = brokers.get_broker(connection, broker).id if broker else None
        records = store.list_m365_connections(connection, broker_id=broker_id)
    if as_json:
        echo_json([_describe(record) for record in records])
        return
    if not records:
        click.echo("No Microsoft 365 connections; add one with `connections m365 add`.")
    for record in records:
        fields = [
            record.broker_name,
            record.name,
            _describe(record)["kind"],
            record.status,
            record.mailbox or "-",
        ]
        click.echo("\t".join(str(field) for field in fields))


@m365.command("set-secret")
@click.argument("name")
@broker_option
@pass_context
def set_secret(context: Context, name: str, broker: str) -> None:
    """Replace the client secret with one read from standard input."""
    record = _find(context, name, broker)
    secret = Secret(read_secret_line("client secret"))
    with context.transaction(write=True) as connection:
        store.set_m365_client_secret(
            connection,
            record.id,
            client_secret_encrypted=context.vault.encrypt(secret),
        )
    click.echo(f"Replaced the client secret of {name}; run `connect` to check it.")


@m365.command("remove")
@click.argument("name")
@broker_option
@pass_context
def remove(context: Context, name: str, broker: str) -> None:
    """Remove a connection with its secret, tokens and Graph subscriptions."""
    found = _find(context, name, broker)
    service = SubscriptionService(context.engine, context.vault, context.settings)
    for problem in asyncio.run(service.unsubscribe_connection(found.id)):
        click.echo(f"Warning: a subscription was not deleted at Graph: {problem}")
    with context.transaction(write=True) as connection:
        broker_id = brokers.get_broker(connection, broker).id
        record = store.remove_m365_connection(
            connection, broker_id=broker_id, name=name
        )
    click.echo(f"Removed Microsoft 365 connection {record.name} of {broker}.")
