"""``brokerhooks salestrekker``: look at a broker's SalesTrekker connection."""

from __future__ import annotations

import asyncio

import click
from graphql import GraphQLSchema

from brokerhooks.cli.base import Context, echo_json, pass_context
from brokerhooks.connectors.errors import ConnectorError
from brokerhooks.connectors.salestrekker.client import SalesTrekkerClient
from brokerhooks.connectors.salestrekker.drift import compare
from brokerhooks.connectors.salestrekker.operations import bundled_schema
from brokerhooks.connectors.salestrekker.tokens import DatabaseTokenStore
from brokerhooks.security.secrets import Secret
from brokerhooks.store.brokers import BrokerRecord, get_api_key_encrypted, get_broker


@click.group()
def salestrekker() -> None:
    """SalesTrekker: check what a broker's tenant serves."""


@salestrekker.command("check")
@click.option("--broker", "broker_name", required=True, help="The broker's name.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def check(context: Context, broker_name: str, as_json: bool) -> None:
    """Compare the broker's live SalesTrekker schema with the bundled one.

    Exits 0 when nothing breaks, 1 when a change breaks brokerhooks (or
    SalesTrekker cannot be asked).
    """
    with context.transaction() as connection:
        broker = get_broker(connection, broker_name)
        encrypted = get_api_key_encrypted(connection, broker.id)
    api_key = context.vault.decrypt(encrypted)

    try:
        live = asyncio.run(_introspect(context, broker, api_key))
    except ConnectorError as error:
        raise click.ClickException(str(error)) from None
    report = compare(bundled_schema(), live)

    if as_json:
        echo_json({"broker": broker.name, **report.as_dict()})
    else:
        click.echo(f"Broker {broker.name}, {broker.salestrekker_url}/graphql")
        click.echo(report.render())
    if not report.ok:
        raise click.exceptions.Exit(1)


async def _introspect(
    context: Context, broker: BrokerRecord, api_key: Secret
) -> GraphQLSchema:
    settings = context.settings
    tokens = DatabaseTokenStore(context.engine, context.vault)
    async with SalesTrekkerClient(
        broker_id=broker.id,
        broker_name=broker.name,
        base_url=broker.salestrekker_url,
        api_key=api_key,
        tokens=tokens,
        timeout=settings.salestrekker_timeout_seconds,
        rate_per_second=settings.salestrekker_rate_per_second,
    ) as client:
        return await client.introspect()
