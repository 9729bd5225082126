"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import threading
import time
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


def utc_value(value: datetime | None) -> datetime | None:
    """``value`` in UTC, as ``UTCDateTime`` binds it for PostgreSQL."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    """``value`` in UTC as ISO 8601 text with its offset, for PostgreSQL."""
    utc = utc_value(value)
    assert utc is not None
    return utc.isoformat()


def sqlite_utc_text(value: datetime | None) -> str | None:
    """``value`` as ``UTCDateTime`` stores it in SQLite, for writing it directly.

    That is naive UTC in the text form of SQLAlchemy's SQLite ``DateTime``:
    ``2026-12-03 18:35:00.123456``, microseconds always present.
    """
    utc = utc_value(value)
    if utc is None:
        return None
    # The offset "+00:00" is the last six characters; cut, not reformatted.
    return utc.isoformat(" ", "microseconds")[:-6]


_RAND_BITS = 74
_RAND_MASK = (1 << _RAND_BITS) - 1
_LOW_MASK = (1 << 62) - 1
_VERSION_AND_VARIANT = (0x7 << 76) | (0x2 << 62)
_uuid7_lock = threading.Lock()
# Ids need to be unique and ordered, not unpredictable: a generator seeded
# from the OS (again in a forked child) is enough, and cheaper than urandom.
_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)
_last_uuid7 = [0, 0]  # milliseconds, random part


def uuid7() -> str:
    """A time-ordered UUID (version 7), strictly increasing in this process.

    Events are ordered by id, so ids made later in a process sort later even
    within one millisecond (the random part then counts up). This is on the
    ingest hot path, so it is built from integers and one format, not from
    ``uuid.UUID`` objects.
    """
    with _uuid7_lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_rand = _last_uuid7
        if millis > last_millis:
            rand = _random.getrandbits(_RAND_BITS)
        else:
            millis, rand = last_millis, last_rand + 1
            if rand > _RAND_MASK:
                millis, rand = millis + 1, 0
        _last_uuid7[0], _last_uuid7[1] = millis, rand

    value = (
        (millis << 80)
        | ((rand >> 62) << 64)
        | (rand & _LOW_MASK)
        | _VERSION_AND_VARIANT
    )
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
