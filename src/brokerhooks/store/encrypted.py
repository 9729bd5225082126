"""Every secret the store keeps encrypted, and re-encrypting them all.

After a new key is put first in BROKERHOOKS_SECRET_KEYS, ``rotate``
re-encrypts each stored secret that the first key cannot read, and
re-hashes the brokers' API keys, so that the old keys can then be dropped.
``survey`` says how many secrets each kind has, and how many of them still
need an older key or no configured key reads at all.

A value is replaced only if it is still the one that was read, so a token
cache saved by a running worker in the meantime is never overwritten with
an older one; such a value is read again and, if need be, re-encrypted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, null, select, update
from sqlalchemy.orm import InstrumentedAttribute

from brokerhooks.errors import ConfigurationError
from brokerhooks.security.secrets import Vault
from brokerhooks.store.models import (
    Broker,
    GraphSubscription,
    M365Connection,
    SalesTrekkerToken,
)

# Times a value changed under us is read again before it is left as it is.
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class EncryptedColumn:
    """A column of Fernet tokens, the key that finds its rows, and its hash.

    ``hash_column`` holds the secret's keyed hash (for looking it up), which
    is also under the first key once the secret is.
    """

    kind: str
    column: InstrumentedAttribute[Any]
    key: InstrumentedAttribute[str]
    hash_column: InstrumentedAttribute[Any] | None = None


ENCRYPTED_COLUMNS = (
    EncryptedColumn(
        "broker API keys", Broker.api_key_encrypted, Broker.id, Broker.api_key_hash
    ),
    EncryptedColumn(
        "SalesTrekker session tokens",
        SalesTrekkerToken.token_encrypted,
        SalesTrekkerToken.broker_id,
    ),
    EncryptedColumn(
        "Microsoft 365 client secrets",
        M365Connection.client_secret_encrypted,
        M365Connection.id,
    ),
    EncryptedColumn(
        "Microsoft 365 token caches",
        M365Connection.token_cache_encrypted,
        M365Connection.id,
    ),
    EncryptedColumn(
        "Microsoft 365 sign-ins in progress",
        M365Connection.auth_flow_encrypted,
        M365Connection.id,
    ),
    EncryptedColumn(
        "Graph subscription client states",
        GraphSubscription.client_state_encrypted,
        GraphSubscription.id,
    ),
)

CURRENT = "current"  # the first key reads it (and its hash is the first key's)
OLDER = "older"  # only an older key reads it
UNREADABLE = "unreadable"  # no configured key reads it
REENCRYPTED = "reencrypted"  # was older, now current


@dataclass(slots=True)
class KindReport:
    """One kind of secret: how many are stored and in what state."""

    kind: str
    stored: int = 0
    reencrypted: int = 0
    older: list[str] = field(default_factory=list)  # keys of rows
    unreadable: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Stored:
    key: str
    token: str
    hash: str | None


def survey(connection: Connection, vault: Vault) -> list[KindReport]:
    """Each kind of secret, with the rows not under the first key."""
    return _each(connection, lambda entry, stored: _state(vault, entry, stored))


def rotate(connection: Connection, vault: Vault) -> list[KindReport]:
    """Re-encrypt under the first key every secret it cannot read yet.

    Secrets no configured key reads are left as they are and reported.
    """
    return _each(
        connection,
        lambda entry, stored: _rotate_one(connection, vault, entry, stored),
    )


def _each(
    connection: Connection, outcome_of: Callable[[EncryptedColumn, _Stored], str]
) -> list[KindReport]:
    """A report per kind, from the outcome of each stored secret."""
    reports = []
    for entry in ENCRYPTED_COLUMNS:
        report = KindReport(entry.kind)
        for stored in _stored(connection, entry):
            report.stored += 1
            outcome = outcome_of(entry, stored)
            if outcome == REENCRYPTED:
                report.reencrypted += 1
            elif outcome == OLDER:
                report.older.append(stored.key)
            elif outcome == UNREADABLE:
                report.unreadable.append(stored.key)
        reports.append(report)
    return reports


def _rotate_one(
    connection: Connection, vault: Vault, entry: EncryptedColumn, stored: _Stored
) -> str:
    for _ in range(_ATTEMPTS):
        state = _state(vault, entry, stored)
        if state != OLDER:
            return state
        values = {entry.column.key: vault.reencrypt(stored.token)}
        if entry.hash_column is not None:
            values[entry.hash_column.key] = _hash(vault, stored.token)
        changed = connection.execute(
            update(entry.column.class_)
            .where(entry.key == stored.key, entry.column == stored.token)
            .values(values)
        )
        if changed.rowcount == 1:
            return REENCRYPTED
        # Saved by someone else since it was read, or gone: read it again.
        again = _stored(connection, entry, stored.key)
        if not again:
            return CURRENT
        stored = again[0]
    return _state(vault, entry, stored)


def _state(vault: Vault, entry: EncryptedColumn, stored: _Stored) -> str:
    if vault.is_current(stored.token):
        if entry.hash_column is None or stored.hash == _hash(vault, stored.token):
            return CURRENT
        return OLDER
    try:
        vault.decrypt(stored.token)
    except ConfigurationError:
        return UNREADABLE
    return OLDER


def _hash(vault: Vault, token: str) -> str:
    return vault.lookup_hash(vault.decrypt(token))


def _stored(
    connection: Connection, entry: EncryptedColumn, key: str | None = None
) -> list[_Stored]:
    hashed = entry.hash_column if entry.hash_column is not None else null()
    query = select(entry.key, entry.column, hashed).where(entry.column.is_not(None))
    if key is not None:
        query = query.where(entry.key == key)
    rows = connection.execute(query.order_by(entry.key)).all()
    return [_Stored(row[0], row[1], row[2]) for row in rows]
