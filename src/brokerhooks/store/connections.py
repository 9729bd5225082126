"""Queries on connections: stored credentials for outside systems.

Only Microsoft 365 connections live here so far. Secrets come in and go out
encrypted; records handed to callers carry none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from brokerhooks.errors import Conflict, NotFound
from brokerhooks.store import runs
from brokerhooks.store.models import (
    M365_CONNECTED,
    M365_KINDS,
    M365_NEEDS_RECONNECT,
    M365_PENDING,
    Broker,
    M365Connection,
)
from brokerhooks.store.types import utcnow, uuid7


@dataclass(frozen=True, slots=True)
class M365ConnectionRecord:
    """A Microsoft 365 connection as shown to people: no secrets."""

    id: str
    broker_id: str
    broker_name: str
    name: str
    kind: str
    tenant_id: str
    client_id: str
    authority_url: str
    graph_url: str
    mailbox: str | None
    status: str
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class M365Secrets:
    """The encrypted secrets of a connection, for the token code only."""

    client_secret_encrypted: str
    token_cache_encrypted: str | None


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """A delegated sign-in between its sign-in link and its callback."""

    connection: M365ConnectionRecord
    auth_flow_encrypted: str
    started_at: datetime


_COLUMNS = (
    M365Connection.id,
    M365Connection.broker_id,
    Broker.name.label("broker_name"),
    M365Connection.name,
    M365Connection.kind,
    M365Connection.tenant_id,
    M365Connection.client_id,
    M365Connection.authority_url,
    M365Connection.graph_url,
    M365Connection.mailbox,
    M365Connection.status,
    M365Connection.last_error,
    M365Connection.created_at,
    M365Connection.updated_at,
)


def _select() -> Any:
    return select(*_COLUMNS).join(Broker, Broker.id == M365Connection.broker_id)


def _record(row: Row[Any]) -> M365ConnectionRecord:
    return M365ConnectionRecord(**row._mapping)


def create_m365_connection(
    connection: Connection,
    *,
    broker_id: str,
    name: str,
    kind: str,
    tenant_id: str,
    client_id: str,
    client_secret_encrypted: str,
    authority_url: str,
    graph_url: str,
    mailbox: str | None,
) -> M365ConnectionRecord:
    """Store a new connection, ``pending``; Conflict if the name is taken."""
    if kind not in M365_KINDS:
        raise ValueError(f"unknown Microsoft 365 connection kind {kind!r}")
    now = utcnow()
    values = {
        "id": uuid7(),
        "broker_id": broker_id,
        "name": name,
        "kind": kind,
        "tenant_id": tenant_id,
        "client_id": client_id,
        "client_secret_encrypted": client_secret_encrypted,
        "authority_url": authority_url,
        "graph_url": graph_url,
        "mailbox": mailbox,
        "status": M365_PENDING,
        "created_at": now,
        "updated_at": now,
    }
    taken = Conflict(
        f"this broker already has a Microsoft 365 connection named {name!r}"
    )
    if connection.scalar(
        select(M365Connection.id).where(
            M365Connection.broker_id == broker_id, M365Connection.name == name
        )
    ):
        raise taken
    try:
        connection.execute(insert(M365Connection).values(**values))
    except IntegrityError:
        raise taken from None
    return get_m365_connection_by_id(connection, str(values["id"]))


def get_m365_connection(
    connection: Connection, *, broker_id: str, name: str
) -> M365ConnectionRecord:
    row = connection.execute(
        _select().where(
            M365Connection.broker_id == broker_id, M365Connection.name == name
        )
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"no Microsoft 365 connection named {name!r} for this broker; "
            "see `brokerhooks connections m365 list`"
        )
    return _record(row)


def get_m365_connection_by_id(
    connection: Connection, connection_id: str
) -> M365ConnectionRecord:
    row = connection.execute(
        _select().where(M365Connection.id == connection_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no Microsoft 365 connection with id {connection_id}")
    return _record(row)


def list_m365_connections(
    connection: Connection, *, broker_id: str | None = None
) -> list[M365ConnectionRecord]:
    query = _select().order_by(Broker.name, M365Connection.name)
    if broker_id is not None:
        query = query.where(M365Connection.broker_id == broker_id)
    return [_record(row) for row in connection.execute(query).all()]


def remove_m365_connection(
    connection: Connection, *, broker_id: str, name: str
) -> M365ConnectionRecord:
    """Delete a connection with its secrets and tokens."""
    record = get_m365_connection(connection, broker_id=broker_id, name=name)
    connection.execute(delete(M365Connection).where(M365Connection.id == record.id))
    return record


def get_m365_secrets(connection: Connection, connection_id: str) -> M365Secrets:
    row = connection.execute(
        select(
            M365Connection.client_secret_encrypted,
            M365Connection.token_cache_encrypted,
        ).where(M365Connection.id == connection_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no Microsoft 365 connection with id {connection_id}")
    return M365Secrets(**row._mapping)


def set_m365_client_secret(
    connection: Connection, connection_id: str, *, client_secret_encrypted: str
) -> None:
    _update(connection, connection_id, client_secret_encrypted=client_secret_encrypted)


def save_m365_token_cache(
    connection: Connection, connection_id: str, *, token_cache_encrypted: str
) -> None:
    _update(connection, connection_id, token_cache_encrypted=token_cache_encrypted)


def begin_m365_sign_in(
    connection: Connection,
    connection_id: str,
    *,
    state: str,
    auth_flow_encrypted: str,
) -> None:
    """Keep a sign-in in progress until its callback; replaces an older one."""
    _update(
        connection,
        connection_id,
        auth_flow_state=state,
        auth_flow_encrypted=auth_flow_encrypted,
        auth_flow_started_at=utcnow(),
    )


def find_m365_sign_in(connection: Connection, state: str) -> PendingSignIn | None:
    row = connection.execute(
        select(
            M365Connection.id,
            M365Connection.auth_flow_encrypted,
            M365Connection.auth_flow_started_at,
        ).where(M365Connection.auth_flow_state == state)
    ).one_or_none()
    if row is None or row.auth_flow_encrypted is None:
        return None
    return PendingSignIn(
        connection=get_m365_connection_by_id(connection, row.id),
        auth_flow_encrypted=row.auth_flow_encrypted,
        started_at=row.auth_flow_started_at,
    )


def complete_m365_sign_in(
    connection: Connection,
    connection_id: str,
    *,
    token_cache_encrypted: str,
    mailbox: str | None,
) -> None:
    """Keep the tokens of a finished sign-in; the connection is ``connected``."""
    _update(
        connection,
        connection_id,
        token_cache_encrypted=token_cache_encrypted,
        mailbox=mailbox,
        status=M365_CONNECTED,
        last_error=None,
        auth_flow_state=None,
        auth_flow_encrypted=None,
        auth_flow_started_at=None,
    )
    _resume_waiting(connection, connection_id)


def mark_m365_connected(
    connection: Connection,
    connection_id: str,
    *,
    token_cache_encrypted: str | None = None,
) -> None:
    values: dict[str, object] = {"status": M365_CONNECTED, "last_error": None}
    if token_cache_encrypted is not None:
        values["token_cache_encrypted"] = token_cache_encrypted
    _update(connection, connection_id, **values)
    _resume_waiting(connection, connection_id)


def _resume_waiting(connection: Connection, connection_id: str) -> None:
    """Queue again the actions parked while the connection needed a sign-in."""
    row = connection.execute(
        select(M365Connection.broker_id, M365Connection.name).where(
            M365Connection.id == connection_id
        )
    ).one()
    for key in runs.waiting_for_connection(connection, row.broker_id, row.name):
        runs.requeue(connection, key)


def mark_m365_needs_reconnect(
    connection: Connection, connection_id: str, *, reason: str
) -> None:
    _update(connection, connection_id, status=M365_NEEDS_RECONNECT, last_error=reason)


def set_m365_last_error(
    connection: Connection, connection_id: str, *, reason: str
) -> None:
    """Note why the last sign-in failed, without changing the status."""
    _update(connection, connection_id, last_error=reason)


def _update(connection: Connection, connection_id: str, **values: object) -> None:
    result = connection.execute(
        update(M365Connection)
        .where(M365Connection.id == connection_id)
        .values(**values, updated_at=utcnow())
    )
    if result.rowcount == 0:
        raise NotFound(f"no Microsoft 365 connection with id {connection_id}")
