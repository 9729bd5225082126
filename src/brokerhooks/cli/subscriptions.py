"""Microsoft Graph subscriptions from the command line.

``brokerhooks connections m365 subscribe|unsubscribe NAME`` (added to the
``m365`` group when this module is imported) and ``brokerhooks
subscriptions list|renew|resync``. The work is done by
``connectors.msgraph.subscriptions.SubscriptionService``, which the console
calls too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

import click

from brokerhooks.cli.base import Context, echo_json, pass_context
from brokerhooks.cli.connections import m365
from brokerhooks.connectors.errors import ConnectorError
from brokerhooks.connectors.msgraph.subscriptions import (
    SubscriptionService,
    renew_at,
    resource_kind,
)
from brokerhooks.errors import NotFound
from brokerhooks.ingest.msgraph_events import CHANGE_TYPES, RESOURCE_KINDS
from brokerhooks.store import brokers
from brokerhooks.store import connections as connection_store
from brokerhooks.store import subscriptions as store
from brokerhooks.store.connections import M365ConnectionRecord
from brokerhooks.store.subscriptions import SubscriptionRecord

T = TypeVar("T")


def service(context: Context) -> SubscriptionService:
    return SubscriptionService(context.engine, context.vault, context.settings)


def describe(record: SubscriptionRecord) -> dict[str, object]:
    """A subscription as JSON, without its client state."""
    expires = record.expires_at
    return {
        "id": record.id,
        "broker": record.broker_name,
        "connection": record.connection_name,
        "resource_kind": record.kind,
        "list": record.list_name,
        "resource": record.resource,
        "change_types": record.change_types.split(","),
        "status": record.status,
        "graph_subscription_id": record.graph_subscription_id,
        "expires_at": _iso(expires),
        "renews_at": _iso(renew_at(resource_kind(record.kind), expires))
        if expires
        else None,
        "last_notification_at": _iso(record.last_notification_at),
        "last_lifecycle_event": record.last_lifecycle_event,
        "last_error": record.last_error,
        "created_at": _iso(record.created_at),
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _run(call: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a service call; a connector error becomes a message and exit 1."""
    try:
        return asyncio.run(call())
    except ConnectorError as error:
        raise click.ClickException(str(error)) from None
    except ValueError as error:
        raise click.UsageError(str(error)) from None


def _connection(context: Context, name: str, broker: str) -> M365ConnectionRecord:
    with context.transaction() as connection:
        broker_id = brokers.get_broker(connection, broker).id
        return connection_store.get_m365_connection(
            connection, broker_id=broker_id, name=name
        )


def _change_types(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    wanted = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    unknown = sorted(set(wanted) - set(CHANGE_TYPES))
    if not wanted or unknown:
        raise click.BadParameter(
            f"use {', '.join(CHANGE_TYPES)}, separated by commas",
            param_hint="--change-types",
        )
    return wanted


broker_option = click.option("--broker", required=True, help="The broker's name.")
resource_option = click.option(
    "--resource",
    "kind",
    type=click.Choice(list(RESOURCE_KINDS)),
    required=True,
    help="inbox: mail that arrives; calendar: Outlook events; todo: a To Do "
    "list's tasks; drive: OneDrive files.",
)
list_option = click.option(
    "--list", "list_name", help="The To Do list, for --resource todo (default Tasks)."
)


@m365.command("subscribe")
@click.argument("name")
@broker_option
@resource_option
@list_option
@click.option(
    "--change-types",
    help="created, updated, deleted (comma-separated); default per resource.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def subscribe(
    context: Context,
    name: str,
    broker: str,
    kind: str,
    list_name: str | None,
    change_types: str | None,
    as_json: bool,
) -> None:
    """Have Microsoft Graph notify brokerhooks of changes in a connection.

    Graph checks at once that it can reach BROKERHOOKS_PUBLIC_URL; the worker
    renews the subscription before it expires.
    """
    record = _connection(context, name, broker)
    changes = _change_types(change_types)
    subscription = _run(
        lambda: service(context).subscribe(
            record.id, kind, list_name=list_name, change_types=changes
        )
    )
    if as_json:
        echo_json(describe(subscription))
        return
    what = f"{kind} ({subscription.list_name})" if subscription.list_name else kind
    click.echo(f"Subscribed {name} of {broker} to {what}: {subscription.id}")
    click.echo(f"  expires {_iso(subscription.expires_at)}; renewed by the worker")


@m365.command("unsubscribe")
@click.argument("name")
@broker_option
@resource_option
@list_option
@pass_context
def unsubscribe(
    context: Context, name: str, broker: str, kind: str, list_name: str | None
) -> None:
    """Stop the notifications of a connection's resource."""
    record = _connection(context, name, broker)
    with context.transaction() as connection:
        found = [
            sub
            for sub in store.list_subscriptions(connection, connection_id=record.id)
            if sub.kind == kind and (list_name is None or sub.list_name == list_name)
        ]
    if not found:
        raise NotFound(
            f"{name} of {broker} has no {kind} subscription; "
            "see `brokerhooks subscriptions list`"
        )
    for subscription in found:
        _unsubscribe(context, subscription.id)
        click.echo(f"Unsubscribed {name} of {broker} from {kind}: {subscription.id}")


def _unsubscribe(context: Context, subscription_id: str) -> None:
    _run(lambda: service(context).unsubscribe(subscription_id))


@click.group()
def subscriptions() -> None:
    """Microsoft Graph subscriptions: what they watch, their expiry, renewal."""


@subscriptions.command("list")
@click.option("--broker", help="Only this broker's subscriptions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_(context: Context, broker: str | None, as_json: bool) -> None:
    """List subscriptions with their status and when they expire and renew."""
    with context.transaction() as connection:
        broker_id = brokers.get_broker(connection, broker).id if broker else None
        records = store.list_subscriptions(connection, broker_id=broker_id)
    if as_json:
        echo_json([describe(record) for record in records])
        return
    if not records:
        click.echo(
            "No subscriptions; add one with `connections m365 subscribe NAME "
            "--broker B --resource inbox`."
        )
    for record in records:
        shown = describe(record)
        fields = [
            record.id,
            record.broker_name,
            record.connection_name,
            record.kind + (f" ({record.list_name})" if record.list_name else ""),
            record.status,
            f"expires {shown['expires_at'] or '-'}",
            f"renews {shown['renews_at'] or '-'}",
        ]
        if record.last_error:
            fields.append(f"error: {record.last_error}")
        click.echo("\t".join(fields))


@subscriptions.command("renew")
@click.argument("subscription_id")
@pass_context
def renew(context: Context, subscription_id: str) -> None:
    """Renew a subscription now (recreating it if Graph no longer has it)."""
    record = _run(lambda: service(context).renew(subscription_id))
    click.echo(f"Renewed {record.id}: expires {_iso(record.expires_at)}")


@subscriptions.command("resync")
@click.argument("subscription_id")
@pass_context
def resync(context: Context, subscription_id: str) -> None:
    """Store events for what changed since the last delta query."""
    result = _run(
        lambda: service(context).resync(
            subscription_id, reason="asked for on the command line"
        )
    )
    click.echo(f"Resynchronised {subscription_id}: {result.events} event(s) stored")
    if result.delta_link_expired:
        click.echo("  the delta link had expired: changes before now were skipped")
