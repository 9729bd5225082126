"""``brokerhooks brokers``: add, list, rotate keys, remove."""

from __future__ import annotations

from urllib.parse import urlsplit

import click

from brokerhooks.cli.base import Context, echo_json, pass_context, read_secret_line
from brokerhooks.security.secrets import Secret
from brokerhooks.store import brokers as store
from brokerhooks.store.brokers import BrokerRecord


def _validate_url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise click.BadParameter(
            f"{value!r} is not a URL; expected https://TENANT.salestrekker.com"
        )
    return f"{parts.scheme}://{parts.netloc}".rstrip("/")


def _validate_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    value = value.strip()
    if not value or len(value) > 100:
        raise click.BadParameter("a broker name has 1 to 100 characters")
    return value


def webhook_url(context: Context) -> str:
    return context.settings.public_url.rstrip("/") + "/hooks/salestrekker"


def _describe(context: Context, broker: BrokerRecord) -> dict[str, object]:
    return {
        "id": broker.id,
        "name": broker.name,
        "salestrekker_url": broker.salestrekker_url,
        "webhook_url": webhook_url(context),
        "created_at": broker.created_at.isoformat(),
        "key_rotated_at": broker.key_rotated_at.isoformat()
        if broker.key_rotated_at
        else None,
    }


@click.group()
def brokers() -> None:
    """Brokers: the tenants whose SalesTrekker webhooks are received."""


@brokers.command("add")
@click.argument("name", callback=_validate_name)
@click.option(
    "--salestrekker-url",
    required=True,
    callback=_validate_url,
    help="The broker's SalesTrekker address, https://TENANT.salestrekker.com.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def add(context: Context, name: str, salestrekker_url: str, as_json: bool) -> None:
    """Add a broker; its SalesTrekker API key is read from standard input."""
    key = Secret(read_secret_line("SalesTrekker API key"))
    vault = context.vault
    with context.transaction(write=True) as connection:
        broker = store.create_broker(
            connection,
            name=name,
            salestrekker_url=salestrekker_url,
            api_key_encrypted=vault.encrypt(key),
            api_key_hash=vault.lookup_hash(key),
        )
    if as_json:
        echo_json(_describe(context, broker))
        return
    click.echo(f"Added broker {broker.name}")
    click.echo(f"  id:          {broker.id}")
    click.echo(f"  webhook URL: {webhook_url(context)}")
    click.echo("Paste the webhook URL into SalesTrekker for each event.")


@brokers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_(context: Context, as_json: bool) -> None:
    """List the brokers."""
    with context.transaction() as connection:
        records = store.list_brokers(connection)
    if as_json:
        echo_json([_describe(context, broker) for broker in records])
        return
    if not records:
        click.echo("No brokers yet; add one with `brokerhooks brokers add`.")
    for broker in records:
        click.echo(f"{broker.name}\t{broker.id}\t{broker.salestrekker_url}")


@brokers.command("rotate-key")
@click.argument("name")
@pass_context
def rotate_key(context: Context, name: str) -> None:
    """Replace a broker's API key with a new one read from standard input."""
    key = Secret(read_secret_line("new SalesTrekker API key"))
    vault = context.vault
    with context.transaction(write=True) as connection:
        broker = store.set_api_key(
            connection,
            name,
            api_key_encrypted=vault.encrypt(key),
            api_key_hash=vault.lookup_hash(key),
        )
    click.echo(f"Replaced the API key of broker {broker.name}.")


@brokers.command("remove")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Delete the broker's events too.")
@pass_context
def remove(context: Context, name: str, purge: bool) -> None:
    """Remove a broker. Its events are kept unless --purge is given."""
    with context.transaction(write=True) as connection:
        broker = store.remove_broker(connection, name, purge=purge)
    kept = "and its events" if purge else "(its events are kept)"
    click.echo(f"Removed broker {broker.name} {kept}.")
