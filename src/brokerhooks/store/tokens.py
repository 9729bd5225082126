"""Queries on SalesTrekker session tokens (stored encrypted)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, select

from brokerhooks.store.database import dialect_insert
from brokerhooks.store.models import SalesTrekkerToken
from brokerhooks.store.types import utcnow


def load_token(connection: Connection, broker_id: str) -> tuple[str, datetime] | None:
    """(encrypted token, expiry) of the broker, or None."""
    row = connection.execute(
        select(SalesTrekkerToken.token_encrypted, SalesTrekkerToken.expires_at).where(
            SalesTrekkerToken.broker_id == broker_id
        )
    ).one_or_none()
    return (row.token_encrypted, row.expires_at) if row is not None else None


def save_token(
    connection: Connection, broker_id: str, token_encrypted: str, expires_at: datetime
) -> None:
    """Keep the broker's token, replacing any other.

    Workers that sign in at the same time each save theirs; the last one
    wins (an upsert, so the others do not fail on the broker's key).
    """
    values = {
        "token_encrypted": token_encrypted,
        "expires_at": expires_at,
        "obtained_at": utcnow(),
    }
    statement = dialect_insert(connection, SalesTrekkerToken).values(
        broker_id=broker_id, **values
    )
    connection.execute(
        statement.on_conflict_do_update(index_elements=["broker_id"], set_=values)
    )


def discard_token(connection: Connection, broker_id: str) -> None:
    connection.execute(
        delete(SalesTrekkerToken).where(SalesTrekkerToken.broker_id == broker_id)
    )
