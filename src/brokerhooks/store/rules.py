"""Queries on rules: each broker's rules, kept as YAML text."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from brokerhooks.errors import NotFound
from brokerhooks.store.models import RuleRecord
from brokerhooks.store.types import utcnow


@dataclass(frozen=True, slots=True)
class StoredRule:
    rule_id: str
    name: str | None
    source: str
    enabled: bool
    updated_at: datetime


_COLUMNS = (
    RuleRecord.rule_id,
    RuleRecord.name,
    RuleRecord.source,
    RuleRecord.enabled,
    RuleRecord.updated_at,
)


def list_rules(connection: Connection, broker_id: str) -> list[StoredRule]:
    rows = connection.execute(
        select(*_COLUMNS)
        .where(RuleRecord.broker_id == broker_id)
        .order_by(RuleRecord.rule_id)
    ).all()
    return [StoredRule(**row._mapping) for row in rows]


def get_rule(connection: Connection, broker_id: str, rule_id: str) -> StoredRule:
    row = connection.execute(
        select(*_COLUMNS).where(
            RuleRecord.broker_id == broker_id, RuleRecord.rule_id == rule_id
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no rule {rule_id!r}; see `brokerhooks rules list`")
    return StoredRule(**row._mapping)


def save_rule(
    connection: Connection,
    broker_id: str,
    *,
    rule_id: str,
    name: str | None,
    source: str,
    enabled: bool,
) -> bool:
    """Insert or replace a rule; True if it was new."""
    now = utcnow()
    result = connection.execute(
        update(RuleRecord)
        .where(RuleRecord.broker_id == broker_id, RuleRecord.rule_id == rule_id)
        .values(name=name, source=source, enabled=enabled, updated_at=now)
    )
    if result.rowcount:
        return False
    connection.execute(
        insert(RuleRecord).values(
            id=str(uuid.uuid4()),
            broker_id=broker_id,
            rule_id=rule_id,
            name=name,
            source=source,
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
    )
    return True


def set_enabled(
    connection: Connection, broker_id: str, rule_id: str, enabled: bool
) -> None:
    result = connection.execute(
        update(RuleRecord)
        .where(RuleRecord.broker_id == broker_id, RuleRecord.rule_id == rule_id)
        .values(enabled=enabled, updated_at=utcnow())
    )
    if not result.rowcount:
        raise NotFound(f"no rule {rule_id!r}; see `brokerhooks rules list`")


def delete_rule(connection: Connection, broker_id: str, rule_id: str) -> None:
    get_rule(connection, broker_id, rule_id)
    connection.execute(
        delete(RuleRecord).where(
            RuleRecord.broker_id == broker_id, RuleRecord.rule_id == rule_id
        )
    )
