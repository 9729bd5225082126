"""``brokerhooks events``: list and show stored events."""

from __future__ import annotations

import click

from brokerhooks.cli.base import Context, echo_json, pass_context
from brokerhooks.store import events as store
from brokerhooks.store.brokers import get_broker
from brokerhooks.store.models import EVENT_STATUSES


@click.group()
def events() -> None:
    """Events: the notifications received and stored."""


@events.command("list")
@click.option("--broker", "broker_name", help="Only this broker's events.")
@click.option("--type", "type_", help="Only events of this type (dealCreated...).")
@click.option("--status", type=click.Choice(EVENT_STATUSES), help="Only this status.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_(
    context: Context,
    broker_name: str | None,
    type_: str | None,
    status: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List events, newest first."""
    with context.transaction() as connection:
        broker_id = get_broker(connection, broker_name).id if broker_name else None
        records = store.list_events(
            connection, broker_id=broker_id, type=type_, status=status, limit=limit
        )
    if as_json:
        echo_json([record.as_dict() for record in records])
        return
    for record in records:
        click.echo(
            f"{record.id}  {record.received_at:%Y-%m-%d %H:%M:%S}  "
            f"{record.broker:<16} {record.type:<28} {record.status:<15} "
            f"{record.entity_id}"
        )


@events.command("show")
@click.argument("event_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def show(context: Context, event_id: str, as_json: bool) -> None:
    """Show one event with its delivery."""
    with context.transaction() as connection:
        record = store.get_event(connection, event_id)
        delivery = store.get_delivery(connection, record.delivery_id)
    document = record.as_dict()
    document["delivery"] = {
        "id": delivery["id"],
        "received_at": delivery["received_at"].isoformat(),
        "client_address": delivery["client_address"],
        "body_size": delivery["body_size"],
        "body_sha256": delivery["body_sha256"],
    }
    if as_json:
        echo_json(document)
        return
    for name, value in document.items():
        click.echo(f"{name + ':':<14}{value}")
