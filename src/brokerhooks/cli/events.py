"""``brokerhooks events``: list and show stored events."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime

import click

from brokerhooks.cli.base import Context, echo_json, pass_context
from brokerhooks.store import events as store
from brokerhooks.store import processing
from brokerhooks.store.brokers import get_broker
from brokerhooks.store.models import EVENT_STATUSES
from brokerhooks.store.types import utcnow
from brokerhooks.timeparse import parse_duration


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
    """Show one event: delivery, attempts, snapshot and changes."""
    with context.transaction() as connection:
        document = store.event_details(connection, event_id)
    if as_json:
        echo_json(document)
        return
    for name, value in document.items():
        if isinstance(value, dict | list) and value:
            click.echo(f"{name}:")
            click.echo(textwrap.indent(json.dumps(value, indent=2, default=str), "  "))
        else:
            click.echo(f"{name + ':':<16}{value}")


def _parse_since(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> datetime | None:
    if value is None:
        return None
    try:
        return utcnow() - parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@events.command("replay")
@click.argument("event_ids", nargs=-1)
@click.option("--broker", "broker_name", help="Replay this broker's events.")
@click.option("--status", type=click.Choice(EVENT_STATUSES), help="Only this status.")
@click.option(
    "--since",
    callback=_parse_since,
    help="Only events received within this long (30m, 2h, 2d, 1w).",
)
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1))
@pass_context
def replay(
    context: Context,
    event_ids: tuple[str, ...],
    broker_name: str | None,
    status: str | None,
    since: datetime | None,
    limit: int,
) -> None:
    """Process events again from the start, with today's rules and code.

    Name events by id, or select them with --broker/--status/--since.
    """
    if not event_ids and not (broker_name or status or since):
        raise click.UsageError(
            "name event ids, or select events with --broker, --status or --since"
        )
    with context.transaction(write=True) as connection:
        if event_ids:
            for event_id in event_ids:
                store.get_event(connection, event_id)  # NotFound names the id
            selected = list(event_ids)
        else:
            broker_id = get_broker(connection, broker_name).id if broker_name else None
            selected = processing.select_for_replay(
                connection,
                broker_id=broker_id,
                status=status,
                since=since,
                limit=limit,
            )
        queued = [
            event_id for event_id in selected if processing.replay(connection, event_id)
        ]
    skipped = len(selected) - len(queued)
    click.echo(f"Queued {len(queued)} event(s) for replay.")
    if skipped:
        click.echo(
            f"Skipped {skipped}: already queued or running, or unsupported.", err=True
        )
