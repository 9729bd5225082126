"""``brokerhooks users``: the people who sign in to the console."""

from __future__ import annotations

import sys

import click

from brokerhooks.cli.base import Context, echo_json, pass_context
from brokerhooks.console.passwords import hash_password, password_problem
from brokerhooks.security.secrets import Secret
from brokerhooks.store import users as store
from brokerhooks.store.brokers import get_broker
from brokerhooks.store.users import UserRecord


def read_password() -> Secret:
    """A new password: asked twice on a terminal, else one line of stdin."""
    if sys.stdin.isatty():
        value = click.prompt(
            "Password", hide_input=True, confirmation_prompt=True, err=True
        )
    else:
        value = sys.stdin.readline().rstrip("\r\n")
    password = Secret(value)
    problem = password_problem(password)
    if problem is not None:
        raise click.UsageError(f"{problem}; give another one")
    return password


def _describe(user: UserRecord) -> dict[str, object]:
    return {
        "id": user.id,
        "email": user.email,
        "broker": user.broker_name,
        "admin": user.is_admin,
        "created_at": user.created_at.isoformat(),
        "last_sign_in_at": user.last_sign_in_at.isoformat()
        if user.last_sign_in_at
        else None,
    }


@click.group()
def users() -> None:
    """Users: the people who sign in to the console."""


@users.command("add")
@click.argument("email")
@click.option("--broker", "broker_name", help="The broker the user belongs to.")
@click.option("--admin", is_flag=True, help="An admin: sees and manages every broker.")
@pass_context
def add(context: Context, email: str, broker_name: str | None, admin: bool) -> None:
    """Add a user; the password is read from a prompt or standard input."""
    if admin == (broker_name is not None):
        raise click.UsageError(
            "give --broker NAME, or --admin (an admin has no broker)"
        )
    if "@" not in email or len(email) > 320:
        raise click.BadParameter(
            f"{email!r} is not an email address", param_hint="EMAIL"
        )
    password = read_password()
    with context.transaction(write=True) as connection:
        broker_id = get_broker(connection, broker_name).id if broker_name else None
        user = store.create_user(
            connection,
            email=email,
            password_hash=hash_password(password),
            broker_id=broker_id,
            is_admin=admin,
        )
    role = "admin" if user.is_admin else f"user of broker {user.broker_name}"
    click.echo(f"Added {user.email} ({role}).")


@users.command("list")
@click.option("--broker", "broker_name", help="Only this broker's users.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_(context: Context, broker_name: str | None, as_json: bool) -> None:
    """List users."""
    with context.transaction() as connection:
        broker_id = get_broker(connection, broker_name).id if broker_name else None
        records = store.list_users(connection, broker_id=broker_id)
    if as_json:
        echo_json([_describe(user) for user in records])
        return
    if not records:
        click.echo("No users yet; add one with `brokerhooks users add`.")
    for user in records:
        role = "admin" if user.is_admin else user.broker_name
        seen = f"{user.last_sign_in_at:%Y-%m-%d %H:%M}" if user.last_sign_in_at else "-"
        click.echo(f"{user.email}\t{role}\tlast sign-in {seen}")


@users.command("set-password")
@click.argument("email")
@pass_context
def set_password(context: Context, email: str) -> None:
    """Replace a user's password (read like `add`); signs the user out."""
    password = read_password()
    with context.transaction(write=True) as connection:
        user = store.get_user_by_email(connection, email)
        store.set_password_hash(connection, user.id, hash_password(password))
    click.echo(f"Replaced the password of {user.email}.")


@users.command("remove")
@click.argument("email")
@pass_context
def remove(context: Context, email: str) -> None:
    """Remove a user and end their sessions."""
    with context.transaction(write=True) as connection:
        user = store.get_user_by_email(connection, email)
        store.remove_user(connection, user.id)
    click.echo(f"Removed {user.email}.")
