"""Time-ordered ids and UTC timestamps as the store writes them."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite

from brokerhooks.store import types
from brokerhooks.store.types import sqlite_utc_text, utc_text, uuid7

MILLISECOND = 1_000_000  # in nanoseconds


def test_uuid7_is_a_canonical_version_7_uuid() -> None:
    value = uuid7()

    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_uuid7_carries_the_unix_time_in_milliseconds() -> None:
    before = datetime.now(UTC)
    value = uuid7()
    after = datetime.now(UTC)

    millis = uuid.UUID(value).int >> 80
    stamped = datetime.fromtimestamp(millis / 1000, UTC)
    assert before - timedelta(milliseconds=1) <= stamped <= after


def test_uuid7_strictly_increases() -> None:
    values = [uuid7() for _ in range(20_000)]

    assert values == sorted(values)
    assert len(set(values)) == len(values)


@pytest.mark.parametrize(
    "clock",
    [[5 * MILLISECOND] * 50, [9 * MILLISECOND - n * MILLISECOND for n in range(50)]],
    ids=["same-millisecond", "clock-going-back"],
)
def test_uuid7_increases_whatever_the_clock_does(
    monkeypatch: pytest.MonkeyPatch, clock: list[int]
) -> None:
    ticks = iter(clock)
    monkeypatch.setattr(types, "_last_uuid7", [0, 0])
    monkeypatch.setattr(time, "time_ns", lambda: next(ticks))

    values = [uuid7() for _ in clock]

    assert values == sorted(values)
    assert len(set(values)) == len(values)
    assert all(uuid.UUID(value).version == 7 for value in values)


def test_uuid7_moves_to_the_next_millisecond_when_the_counter_is_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """74 random bits count up within a millisecond; past the top, time moves."""
    monkeypatch.setattr(types, "_last_uuid7", [5, (1 << 74) - 1])
    monkeypatch.setattr(time, "time_ns", lambda: 5 * MILLISECOND)

    value = uuid.UUID(uuid7())

    assert value.int >> 80 == 6
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 3, 18, 35, 0, 123456, tzinfo=UTC),
        datetime(2026, 12, 3, 18, 35, 0, 0, tzinfo=UTC),
        datetime(2026, 12, 4, 5, 35, 0, 7, tzinfo=timezone(timedelta(hours=11))),
        datetime(999, 1, 2, 3, 4, 5, 60, tzinfo=UTC),
    ],
    ids=["micro", "whole-second", "sydney", "year-999"],
)
def test_sqlite_text_is_what_sqlalchemy_writes(moment: datetime) -> None:
    dialect = sqlite.dialect()
    processor = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert processor is not None
    naive_utc = moment.astimezone(UTC).replace(tzinfo=None)

    assert sqlite_utc_text(moment) == processor(naive_utc)


def test_timestamps_must_carry_a_time_zone() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_utc_text(datetime(2026, 12, 3, 18, 35))
    with pytest.raises(ValueError, match="naive"):
        utc_text(datetime(2026, 12, 3, 18, 35))
    assert sqlite_utc_text(None) is None


def test_utc_text_names_the_same_instant() -> None:
    sydney = datetime(2026, 12, 4, 5, 35, tzinfo=timezone(timedelta(hours=11)))

    text = utc_text(sydney)

    assert text == "2026-12-03T18:35:00+00:00"
    assert datetime.fromisoformat(text) == sydney
