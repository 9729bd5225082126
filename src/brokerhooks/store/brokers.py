"""Queries on brokers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from brokerhooks.errors import Conflict, NotFound
from brokerhooks.store.models import (
    Attempt,
    Broker,
    Delivery,
    Event,
    Job,
    M365Connection,
    SalesTrekkerToken,
    Snapshot,
)
from brokerhooks.store.types import utcnow


@dataclass(frozen=True, slots=True)
class BrokerRecord:
    id: str
    name: str
    salestrekker_url: str
    created_at: datetime
    key_rotated_at: datetime | None


@dataclass(frozen=True, slots=True)
class BrokerKey:
    """What ingest needs to recognise a broker: its id, name and key hash."""

    id: str
    name: str
    api_key_hash: str


def _record(row: Broker) -> BrokerRecord:
    return BrokerRecord(
        id=row.id,
        name=row.name,
        salestrekker_url=row.salestrekker_url,
        created_at=row.created_at,
        key_rotated_at=row.key_rotated_at,
    )


_ACTIVE = Broker.removed_at.is_(None)


def create_broker(
    connection: Connection,
    *,
    name: str,
    salestrekker_url: str,
    api_key_encrypted: str,
    api_key_hash: str,
) -> BrokerRecord:
    """Store a new broker; Conflict if the name or the key is taken."""
    if _find(connection, name) is not None:
        raise Conflict(f"a broker named {name!r} already exists")
    if connection.scalar(
        select(Broker.name).where(Broker.api_key_hash == api_key_hash)
    ):
        raise Conflict("that API key already belongs to another broker")
    values = {
        "id": str(uuid.uuid4()),
        "name": name,
        "salestrekker_url": salestrekker_url,
        "api_key_encrypted": api_key_encrypted,
        "api_key_hash": api_key_hash,
        "created_at": utcnow(),
    }
    try:
        connection.execute(insert(Broker).values(**values))
    except IntegrityError:
        raise Conflict(f"a broker named {name!r} already exists") from None
    return get_broker(connection, name)


def _find(connection: Connection, name: str) -> Broker | None:
    row = connection.execute(
        select(Broker.__table__).where(Broker.name == name, _ACTIVE)
    ).one_or_none()
    return Broker(**row._mapping) if row is not None else None


def get_broker(connection: Connection, name: str) -> BrokerRecord:
    row = _find(connection, name)
    if row is None:
        raise NotFound(f"no broker named {name!r}; see `brokerhooks brokers list`")
    return _record(row)


def get_broker_by_id(connection: Connection, broker_id: str) -> BrokerRecord:
    row = connection.execute(
        select(Broker.__table__).where(Broker.id == broker_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no broker with id {broker_id}")
    return _record(Broker(**row._mapping))


def get_api_key_encrypted(connection: Connection, broker_id: str) -> str:
    value = connection.scalar(
        select(Broker.api_key_encrypted).where(Broker.id == broker_id, _ACTIVE)
    )
    if value is None:
        raise NotFound(f"broker {broker_id} has been removed")
    return value


def list_brokers(connection: Connection) -> list[BrokerRecord]:
    rows = connection.execute(
        select(Broker.__table__).where(_ACTIVE).order_by(Broker.name)
    ).all()
    return [_record(Broker(**row._mapping)) for row in rows]


def active_broker_keys(connection: Connection) -> list[BrokerKey]:
    rows = connection.execute(
        select(Broker.id, Broker.name, Broker.api_key_hash).where(
            _ACTIVE, Broker.api_key_hash.is_not(None)
        )
    ).all()
    return [BrokerKey(row.id, row.name, row.api_key_hash) for row in rows]


def set_api_key(
    connection: Connection,
    name: str,
    *,
    api_key_encrypted: str,
    api_key_hash: str,
    rotated: bool = True,
) -> BrokerRecord:
    broker = get_broker(connection, name)
    owner = connection.scalar(
        select(Broker.id).where(Broker.api_key_hash == api_key_hash)
    )
    if owner is not None and owner != broker.id:
        raise Conflict("that API key already belongs to another broker")
    values: dict[str, object] = {
        "api_key_encrypted": api_key_encrypted,
        "api_key_hash": api_key_hash,
    }
    if rotated:
        values["key_rotated_at"] = utcnow()
    connection.execute(update(Broker).where(Broker.id == broker.id).values(**values))
    return get_broker(connection, name)


def remove_broker(connection: Connection, name: str, *, purge: bool) -> BrokerRecord:
    """Remove a broker: wipe its key and credentials; with ``purge``, its events.

    Its Microsoft 365 connections (with their refresh tokens) and its
    SalesTrekker session token go either way: a removed broker keeps no
    credential.
    """
    broker = get_broker(connection, name)
    connection.execute(
        delete(M365Connection).where(M365Connection.broker_id == broker.id)
    )
    connection.execute(
        delete(SalesTrekkerToken).where(SalesTrekkerToken.broker_id == broker.id)
    )
    if purge:
        for table in (Attempt, Snapshot, Job):
            connection.execute(
                delete(table).where(
                    table.event_id.in_(
                        select(Event.id).where(Event.broker_id == broker.id)
                    )
                )
            )
        connection.execute(delete(Event).where(Event.broker_id == broker.id))
        connection.execute(delete(Delivery).where(Delivery.broker_id == broker.id))
        connection.execute(delete(Broker).where(Broker.id == broker.id))
        return broker
    connection.execute(
        update(Broker)
        .where(Broker.id == broker.id)
        .values(api_key_encrypted=None, api_key_hash=None, removed_at=utcnow())
    )
    return broker
