"""``brokerhooks secrets``: generate keys, re-encrypt after rotation, check."""

from __future__ import annotations

import click
from cryptography.fernet import Fernet

from brokerhooks.cli.base import Context, echo_json, pass_context
from brokerhooks.store import encrypted
from brokerhooks.store.encrypted import KindReport


@click.group()
def secrets() -> None:
    """Encryption keys for secrets at rest (BROKERHOOKS_SECRET_KEYS)."""


@secrets.command("generate")
def generate() -> None:
    """Print a new key to put first in BROKERHOOKS_SECRET_KEYS."""
    click.echo(Fernet.generate_key().decode())


@secrets.command("rotate")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def rotate(context: Context, as_json: bool) -> None:
    """Re-encrypt every stored secret under the first key.

    Run it after putting a new key first in BROKERHOOKS_SECRET_KEYS and
    restarting the service. It covers the brokers' SalesTrekker keys (and
    their lookup hashes), SalesTrekker session tokens, Microsoft 365 client
    secrets, token caches and sign-ins in progress, and Graph subscription
    client states. When it reports nothing left, the old keys can be dropped
    from the setting. Running it again does nothing.
    """
    vault = context.vault
    with context.transaction(write=True) as connection:
        reports = encrypted.rotate(connection, vault)
    _report(reports, as_json, done="re-encrypted")


@secrets.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_context
def check(context: Context, as_json: bool) -> None:
    """Say whether every stored secret is under the first key.

    Exits with 1 while a secret needs an older key, or no configured key
    reads it; dropping a key before then loses those secrets.
    """
    vault = context.vault
    with context.transaction() as connection:
        reports = encrypted.survey(connection, vault)
    _report(reports, as_json, done=None)


def _report(reports: list[KindReport], as_json: bool, *, done: str | None) -> None:
    older = sum(len(report.older) for report in reports)
    unreadable = sum(len(report.unreadable) for report in reports)
    if as_json:
        echo_json(
            {
                "kinds": [
                    {
                        "kind": report.kind,
                        "stored": report.stored,
                        **({"reencrypted": report.reencrypted} if done else {}),
                        "older_key": report.older,
                        "unreadable": report.unreadable,
                    }
                    for report in reports
                ],
                "all_under_first_key": older == 0 and unreadable == 0,
            }
        )
    else:
        for report in reports:
            line = f"{report.kind}: {report.stored} stored"
            if done:
                line += f", {report.reencrypted} {done}"
            if report.older:
                line += f", {len(report.older)} still under an older key"
            if report.unreadable:
                line += f", {len(report.unreadable)} readable by no configured key "
                line += f"({', '.join(report.unreadable)})"
            click.echo(line)
        if older == 0 and unreadable == 0:
            click.echo(
                "Every stored secret is under the first key; the other keys in "
                "BROKERHOOKS_SECRET_KEYS can be removed."
            )
        elif unreadable == 0:
            click.echo(
                "Some secrets are still under an older key; run `brokerhooks "
                "secrets rotate` before removing any key."
            )
        else:
            click.echo(
                "Some secrets cannot be read with any key in "
                "BROKERHOOKS_SECRET_KEYS: put back the key they were stored "
                "under, or enter them again (`brokers rotate-key`, `connections "
                "m365 set-secret` or `connect`, `unsubscribe` then `subscribe`)."
            )
    if older or unreadable:
        raise click.exceptions.Exit(1)
