"""``brokerhooks secrets``: generate keys and re-encrypt after rotation."""

from __future__ import annotations

import click
from cryptography.fernet import Fernet

from brokerhooks.cli.base import Context, pass_context
from brokerhooks.store import brokers as store


@click.group()
def secrets() -> None:
    """Encryption keys for secrets at rest (BROKERHOOKS_SECRET_KEYS)."""


@secrets.command("generate")
def generate() -> None:
    """Print a new key to put first in BROKERHOOKS_SECRET_KEYS."""
    click.echo(Fernet.generate_key().decode())


@secrets.command("rotate")
@pass_context
def rotate(context: Context) -> None:
    """Re-encrypt and re-hash every stored secret under the first key.

    Run it after putting a new key first in BROKERHOOKS_SECRET_KEYS; the old
    keys can be dropped from the setting afterwards.
    """
    vault = context.vault
    with context.transaction(write=True) as connection:
        count = 0
        for broker_id, token in store.all_encrypted_keys(connection):
            key = vault.decrypt(token)
            store.set_key_by_id(
                connection,
                broker_id,
                api_key_encrypted=vault.reencrypt(token),
                api_key_hash=vault.lookup_hash(key),
            )
            count += 1
    click.echo(f"Re-encrypted {count} broker key(s) under the first key.")
