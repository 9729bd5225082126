"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp, also on SQLite (which stores naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_last_uuid7: tuple[int, int] = (0, 0)
_RAND_BITS = 74


def uuid7() -> str:
    """A time-ordered UUID (version 7), strictly increasing in this process.

    Events are ordered by id, so ids made later in a process sort later even
    within one millisecond (the random part then counts up).
    """
    global _last_uuid7
    millis = time.time_ns() // 1_000_000
    rand = uuid.uuid4().int & ((1 << _RAND_BITS) - 1)
    last_millis, last_rand = _last_uuid7
    if millis <= last_millis:
        millis, rand = last_millis, last_rand + 1
        if rand >> _RAND_BITS:
            millis, rand = millis + 1, 0
    _last_uuid7 = (millis, rand)
    value = (
        (millis << 80)
        | (0x7 << 76)
        | ((rand >> 62) << 64)
        | (0x2 << 62)
        | (rand & ((1 << 62) - 1))
    )
    return str(uuid.UUID(int=value))
