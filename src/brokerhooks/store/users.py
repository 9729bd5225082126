"""Queries on users and their console sessions.

A user belongs to one broker, or is an admin (no broker, sees every
broker). A session is a signed-in browser: only the SHA-256 of its cookie
token is stored, with the CSRF token its forms carry.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from brokerhooks.errors import Conflict, NotFound
from brokerhooks.store.models import Broker, Session, User
from brokerhooks.store.types import utcnow


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as shown to people: no password hash."""

    id: str
    email: str
    broker_id: str | None
    broker_name: str | None
    is_admin: bool
    created_at: datetime
    last_sign_in_at: datetime | None
    disabled_at: datetime | None


@dataclass(frozen=True, slots=True)
class Credentials:
    """What signing in checks: the user and its password hash."""

    user: UserRecord
    password_hash: str


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A live session with the user it belongs to."""

    token_hash: str
    csrf_token: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    user: UserRecord


_USER_COLUMNS = (
    User.id,
    User.email,
    User.broker_id,
    Broker.name.label("broker_name"),
    User.is_admin,
    User.created_at,
    User.last_sign_in_at,
    User.disabled_at,
)


def _users() -> Select[*tuple[Any, ...]]:
    return select(*_USER_COLUMNS).outerjoin(Broker, Broker.id == User.broker_id)


def normalise_email(email: str) -> str:
    return email.strip().lower()


def create_user(
    connection: Connection,
    *,
    email: str,
    password_hash: str,
    broker_id: str | None,
    is_admin: bool,
) -> UserRecord:
    """Store a new user; Conflict if the email is taken.

    An admin has no broker; every other user has one.
    """
    if is_admin == (broker_id is not None):
        raise ValueError("an admin has no broker; every other user has one")
    email = normalise_email(email)
    taken = Conflict(f"a user with the email {email!r} already exists")
    if connection.scalar(select(User.id).where(User.email == email)):
        raise taken
    user_id = str(uuid.uuid4())
    try:
        connection.execute(
            insert(User).values(
                id=user_id,
                email=email,
                password_hash=password_hash,
                broker_id=broker_id,
                is_admin=is_admin,
                created_at=utcnow(),
            )
        )
    except IntegrityError:
        raise taken from None
    return get_user(connection, user_id)


def get_user(connection: Connection, user_id: str) -> UserRecord:
    row = connection.execute(_users().where(User.id == user_id)).one_or_none()
    if row is None:
        raise NotFound(f"no user with id {user_id}")
    return UserRecord(**row._mapping)


def get_user_by_email(connection: Connection, email: str) -> UserRecord:
    email = normalise_email(email)
    row = connection.execute(_users().where(User.email == email)).one_or_none()
    if row is None:
        raise NotFound(
            f"no user with the email {email!r}; see `brokerhooks users list`"
        )
    return UserRecord(**row._mapping)


def find_credentials(connection: Connection, email: str) -> Credentials | None:
    """The user with this email and its password hash, or None."""
    row = connection.execute(
        select(*_USER_COLUMNS, User.password_hash)
        .outerjoin(Broker, Broker.id == User.broker_id)
        .where(User.email == normalise_email(email))
    ).one_or_none()
    if row is None:
        return None
    values = dict(row._mapping)
    password_hash = values.pop("password_hash")
    return Credentials(UserRecord(**values), password_hash)


def list_users(
    connection: Connection, *, broker_id: str | None = None
) -> list[UserRecord]:
    """Every user (admins first), or only those of one broker."""
    query = _users().order_by(User.is_admin.desc(), Broker.name, User.email)
    if broker_id is not None:
        query = query.where(User.broker_id == broker_id)
    return [UserRecord(**row._mapping) for row in connection.execute(query).all()]


def count_users(connection: Connection, *, broker_id: str) -> int:
    return (
        connection.scalar(
            select(func.count()).select_from(User).where(User.broker_id == broker_id)
        )
        or 0
    )


def set_password_hash(connection: Connection, user_id: str, password_hash: str) -> None:
    """Replace a password (its sessions end: a new password signs others out)."""
    _update(connection, user_id, password_hash=password_hash)
    connection.execute(delete(Session).where(Session.user_id == user_id))


def rehash_password(connection: Connection, user_id: str, password_hash: str) -> None:
    """Store the same password hashed with newer parameters."""
    _update(connection, user_id, password_hash=password_hash)


def record_sign_in(connection: Connection, user_id: str) -> None:
    _update(connection, user_id, last_sign_in_at=utcnow())


def remove_user(connection: Connection, user_id: str) -> UserRecord:
    """Delete a user and end its sessions."""
    user = get_user(connection, user_id)
    connection.execute(delete(Session).where(Session.user_id == user_id))
    connection.execute(delete(User).where(User.id == user_id))
    return user


def _update(connection: Connection, user_id: str, **values: object) -> None:
    result = connection.execute(update(User).where(User.id == user_id).values(**values))
    if not result.rowcount:
        raise NotFound(f"no user with id {user_id}")


# Sessions.


def create_session(
    connection: Connection,
    *,
    token_hash: str,
    user_id: str,
    csrf_token: str,
    expires_at: datetime,
) -> None:
    now = utcnow()
    connection.execute(
        insert(Session).values(
            token_hash=token_hash,
            user_id=user_id,
            csrf_token=csrf_token,
            created_at=now,
            expires_at=expires_at,
            last_seen_at=now,
        )
    )


def find_session(connection: Connection, token_hash: str) -> SessionRecord | None:
    """The session with this token hash and its user, or None.

    Expiry is the caller's to judge: the record carries its times.
    """
    row = connection.execute(
        select(
            Session.token_hash,
            Session.csrf_token,
            Session.created_at.label("session_created_at"),
            Session.expires_at,
            Session.last_seen_at,
            *_USER_COLUMNS,
        )
        .join(User, User.id == Session.user_id)
        .outerjoin(Broker, Broker.id == User.broker_id)
        .where(Session.token_hash == token_hash)
    ).one_or_none()
    if row is None:
        return None
    values = dict(row._mapping)
    return SessionRecord(
        token_hash=values.pop("token_hash"),
        csrf_token=values.pop("csrf_token"),
        created_at=values.pop("session_created_at"),
        expires_at=values.pop("expires_at"),
        last_seen_at=values.pop("last_seen_at"),
        user=UserRecord(**values),
    )


def touch_session(connection: Connection, token_hash: str, now: datetime) -> None:
    connection.execute(
        update(Session).where(Session.token_hash == token_hash).values(last_seen_at=now)
    )


def delete_session(connection: Connection, token_hash: str) -> None:
    connection.execute(delete(Session).where(Session.token_hash == token_hash))


def delete_stale_sessions(
    connection: Connection, *, now: datetime, idle_since: datetime
) -> int:
    """Delete sessions past their expiry or idle since before ``idle_since``."""
    result = connection.execute(
        delete(Session).where(
            (Session.expires_at <= now) | (Session.last_seen_at < idle_since)
        )
    )
    return int(result.rowcount or 0)
