"""``brokerhooks tokens``: a broker's tokens for the JSON API."""

from __future__ import annotations

import click

from brokerhooks.cli.base import Context, echo_json, pass_context
from brokerhooks.store import api_tokens as store
from brokerhooks.store.api_tokens import ApiTokenRecord
from brokerhooks.store.brokers import get_broker


def _validate_label(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    value = value.strip()
    if not value or len(value) > 100:
        raise click.BadParameter("a token name has 1 to 100 characters")
    return value


def _describe(record: ApiTokenRecord, broker_name: str) -> dict[str, object]:
    return {
        "id": record.id,
        "broker": broker_name,
        "name": record.name,
        "created_at": record.created_at.isoformat(),
        "last_used_at": record.last_used_at.isoformat()
        if record.last_used_at
        else None,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


@click.group()
def tokens() -> None:
    """API tokens: how programs reach a broker's data through /api/v1."""


@tokens.command("add")
@click.option("--broker", "broker_name", required=True)
@click.option(
    "--name",
    "label",
    default="api",
    show_default=True,
    callback=_validate_label,
    help="A label saying what the token is for.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def add(context: Context, broker_name: str, label: str, as_json: bool) -> None:
    """Make a token for a broker and print it, once."""
    token = store.new_token()
    with context.transaction(write=True) as connection:
        broker = get_broker(connection, broker_name)
        record = store.add_api_token(
            connection,
            broker_id=broker.id,
            name=label,
            token_hash=store.hash_token(token),
        )
    if as_json:
        echo_json({**_describe(record, broker.name), "token": token.reveal()})
        return
    click.echo(f"Added API token {record.name!r} for broker {broker.name}")
    click.echo(f"  id:    {record.id}")
    click.echo(f"  token: {token.reveal()}")
    click.echo(
        "The token is shown only now; send it as `Authorization: Bearer <token>`."
    )


@tokens.command("list")
@click.option("--broker", "broker_name", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_(context: Context, broker_name: str, as_json: bool) -> None:
    """List a broker's tokens (never the tokens themselves)."""
    with context.transaction() as connection:
        broker = get_broker(connection, broker_name)
        records = store.list_api_tokens(connection, broker.id)
    if as_json:
        echo_json([_describe(record, broker.name) for record in records])
        return
    if not records:
        click.echo(
            f"{broker.name} has no API tokens; add one with `brokerhooks tokens add`."
        )
    for record in records:
        if record.revoked_at is not None:
            state = f"revoked {record.revoked_at:%Y-%m-%d %H:%M}"
        elif record.last_used_at is not None:
            state = f"used {record.last_used_at:%Y-%m-%d %H:%M}"
        else:
            state = "never used"
        click.echo(f"{record.id}  {record.name:<20} {state}")


@tokens.command("revoke")
@click.argument("token_id")
@pass_context
def revoke(context: Context, token_id: str) -> None:
    """Revoke a token: requests bearing it get 401 from now on."""
    with context.transaction(write=True) as connection:
        record = store.revoke_api_token(connection, token_id.strip())
    click.echo(f"Revoked API token {record.name!r} ({record.id}).")
