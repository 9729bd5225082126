"""Queries on API tokens: a broker's credentials for the JSON API.

A token is ``bh_`` followed by 32 random bytes in URL-safe base64. Only its
SHA-256 is stored: the token itself is shown once, when it is made. A plain
hash is enough (no salt, no key) because the token is random and long; it is
not a password anyone chose.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, or_, select, update

from brokerhooks.errors import NotFound
from brokerhooks.security.secrets import Secret
from brokerhooks.store.models import ApiToken, Broker
from brokerhooks.store.types import utcnow

TOKEN_PREFIX = "bh_"  # noqa: S105 (a marker that says what a token is, not a secret)
TOKEN_BYTES = 32
TOKEN_LENGTH = len(TOKEN_PREFIX) + 43
"""The length of every token: the prefix and 32 bytes in unpadded base64."""
TOUCH_INTERVAL = timedelta(minutes=1)
"""``last_used_at`` is written at most this often per token."""


@dataclass(frozen=True, slots=True)
class ApiTokenRecord:
    id: str
    broker_id: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class TokenHolder:
    """Who a presented token speaks for."""

    token_id: str
    broker_id: str
    broker_name: str
    last_used_at: datetime | None


_COLUMNS = (
    ApiToken.id,
    ApiToken.broker_id,
    ApiToken.name,
    ApiToken.created_at,
    ApiToken.last_used_at,
    ApiToken.revoked_at,
)


def new_token() -> Secret:
    """A fresh random token, to be shown once and stored only as its hash."""
    return Secret(TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES))


def hash_token(token: Secret) -> str:
    return hashlib.sha256(token.reveal().encode()).hexdigest()


def add_api_token(
    connection: Connection, *, broker_id: str, name: str, token_hash: str
) -> ApiTokenRecord:
    token_id = str(uuid.uuid4())
    connection.execute(
        insert(ApiToken).values(
            id=token_id,
            broker_id=broker_id,
            name=name,
            token_hash=token_hash,
            created_at=utcnow(),
        )
    )
    return get_api_token(connection, token_id)


def get_api_token(connection: Connection, token_id: str) -> ApiTokenRecord:
    row = connection.execute(
        select(*_COLUMNS).where(ApiToken.id == token_id)
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"no API token with id {token_id}; see `brokerhooks tokens list`"
        )
    return ApiTokenRecord(**row._mapping)


def list_api_tokens(connection: Connection, broker_id: str) -> list[ApiTokenRecord]:
    """The broker's tokens, revoked ones included, oldest first."""
    rows = connection.execute(
        select(*_COLUMNS)
        .where(ApiToken.broker_id == broker_id)
        .order_by(ApiToken.created_at, ApiToken.id)
    ).all()
    return [ApiTokenRecord(**row._mapping) for row in rows]


def revoke_api_token(connection: Connection, token_id: str) -> ApiTokenRecord:
    """Revoke a token (a token already revoked keeps its first revocation)."""
    connection.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return get_api_token(connection, token_id)


def find_token_holder(connection: Connection, token_hash: str) -> TokenHolder | None:
    """The holder of a live token: not revoked, of a broker not removed."""
    row = connection.execute(
        select(
            ApiToken.id.label("token_id"),
            ApiToken.broker_id,
            Broker.name.label("broker_name"),
            ApiToken.last_used_at,
        )
        .join(Broker, Broker.id == ApiToken.broker_id)
        .where(
            ApiToken.token_hash == token_hash,
            ApiToken.revoked_at.is_(None),
            Broker.removed_at.is_(None),
        )
    ).one_or_none()
    return TokenHolder(**row._mapping) if row is not None else None


def needs_touch(holder: TokenHolder, now: datetime) -> bool:
    return holder.last_used_at is None or holder.last_used_at <= now - TOUCH_INTERVAL


def touch_api_token(connection: Connection, token_id: str, now: datetime) -> None:
    """Record a use, unless one was recorded within ``TOUCH_INTERVAL``.

    The condition is in the statement, so that processes racing to record
    the same minute's use write once.
    """
    connection.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(
                ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at <= now - TOUCH_INTERVAL,
            ),
        )
        .values(last_used_at=now)
    )
