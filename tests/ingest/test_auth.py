"""Reading the key from the Authorization header, and the failure throttle."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from sqlalchemy import Engine, create_engine, select, update

from brokerhooks.ingest.auth import FailureThrottle, SharedFailures, parse_authorization
from brokerhooks.store.database import transaction
from brokerhooks.store.failures import subject_hash
from brokerhooks.store.models import AuthFailure
from brokerhooks.store.types import utcnow


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("Salestrekker abc123", "abc123"),
        ("salestrekker abc123", "abc123"),
        ("  SALESTREKKER   abc123  ", "abc123"),
        ("Salestrekker\tabc123", "abc123"),
        (None, None),
        ("", None),
        ("Salestrekker", None),
        ("Salestrekker   ", None),
        ("Bearer abc123", None),
        ("Salestrekker abc 123", None),
        ("Salestrekkerabc123", None),
    ],
)
def test_parse_authorization(header: str | None, key: str | None) -> None:
    parsed = parse_authorization(header)

    assert (parsed.reveal() if parsed else None) == key


def test_parsed_key_never_shows_in_its_repr() -> None:
    parsed = parse_authorization("Salestrekker abc123")

    assert "abc123" not in repr(parsed)
    assert "abc123" not in str(parsed)


def test_throttle_blocks_after_the_limit_and_forgives_success() -> None:
    throttle = FailureThrottle(limit=3, window=60, cooldown=30)

    throttle.failed("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
    throttle.failed("a")

    assert 29 < throttle.retry_after("a") <= 30
    assert throttle.retry_after("b") == 0
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0


def test_throttle_window_expires() -> None:
    throttle = FailureThrottle(limit=2, window=0.05, cooldown=30)

    throttle.failed("a")
    time.sleep(0.1)
    throttle.failed("a")

    assert throttle.retry_after("a") == 0


def test_throttle_forgets_the_oldest_addresses() -> None:
    throttle = FailureThrottle(limit=1, window=60, cooldown=30, capacity=2)

    for address in ("a", "b", "c"):
        throttle.failed(address)

    assert throttle.retry_after("a") == 0
    assert throttle.retry_after("c") > 0


@pytest.mark.anyio
async def test_throttles_sharing_a_store_block_together(engine: Engine) -> None:
    shared = SharedFailures(engine, flush_seconds=3600)  # flushed by hand here

    def throttle(scope: str = "test") -> FailureThrottle:
        return FailureThrottle(
            limit=3, window=60, cooldown=30, shared=shared, scope=scope
        )

    first, second = throttle(), throttle()
    first.failed("203.0.113.9")
    first.failed("203.0.113.9")
    second.failed("203.0.113.9")
    assert second.retry_after("203.0.113.9") == 0  # not flushed yet
    await shared.flush()

    assert 29 < first.retry_after("203.0.113.9") <= 30
    assert 29 < second.retry_after("203.0.113.9") <= 30
    # Another scope counts apart.
    other = throttle("other")
    other.failed("203.0.113.9")
    await shared.flush()
    assert other.retry_after("203.0.113.9") == 0


@pytest.mark.anyio
async def test_a_block_set_by_another_process_is_learnt_at_the_next_flush(
    engine: Engine,
) -> None:
    mine = SharedFailures(engine, flush_seconds=3600)
    theirs = SharedFailures(engine, flush_seconds=3600)
    here = FailureThrottle(limit=3, window=60, cooldown=30, shared=mine)
    there = FailureThrottle(limit=3, window=60, cooldown=30, shared=theirs)

    for _ in range(3):
        there.failed("a")
    await theirs.flush()
    assert here.retry_after("a") == 0
    here.failed("a")
    await mine.flush()

    assert here.retry_after("a") > 29


@pytest.mark.anyio
async def test_a_success_clears_the_shared_count(engine: Engine) -> None:
    shared = SharedFailures(engine, flush_seconds=3600)
    first = FailureThrottle(limit=2, window=60, cooldown=30, shared=shared)
    second = FailureThrottle(limit=2, window=60, cooldown=30, shared=shared)

    first.failed("a")
    await shared.flush()
    await first.record_success("a")
    second.failed("a")
    await shared.flush()

    assert second.retry_after("a") == 0
    with transaction(engine) as connection:
        [stored] = connection.execute(select(AuthFailure.subject, AuthFailure.count))
    assert stored.subject == subject_hash("a") != "a"
    assert stored[1] == 1


@pytest.mark.anyio
async def test_failures_are_flushed_by_themselves(engine: Engine) -> None:
    shared = SharedFailures(engine, flush_seconds=0.05)
    throttle = FailureThrottle(limit=5, window=60, cooldown=30, shared=shared)

    throttle.failed("a")
    throttle.failed("a")
    await asyncio.sleep(0.5)

    with transaction(engine) as connection:
        counts = list(connection.scalars(select(AuthFailure.count)))
    assert counts == [2]  # one batch, both failures


@pytest.mark.anyio
async def test_an_unreachable_store_leaves_the_count_to_the_process(
    tmp_path: Path,
) -> None:
    unreachable = create_engine(f"sqlite:///{tmp_path}/missing/folder/store.db")
    shared = SharedFailures(unreachable, flush_seconds=3600)
    throttle = FailureThrottle(limit=2, window=60, cooldown=30, shared=shared)

    with structlog.testing.capture_logs() as logs:
        throttle.failed("a")
        throttle.failed("a")
        await shared.flush()

    assert throttle.retry_after("a") > 29
    assert [line["event"] for line in logs] == ["auth_failures_not_shared"]


@pytest.mark.anyio
async def test_a_flush_prunes_only_its_own_scopes_old_subjects(engine: Engine) -> None:
    """A short-lived scope's flush keeps a long-lived scope's count."""
    shared = SharedFailures(engine, flush_seconds=3600)
    long_lived = FailureThrottle(
        limit=5, window=3600, cooldown=3600, shared=shared, scope="long"
    )
    short_lived = FailureThrottle(
        limit=5, window=60, cooldown=30, shared=shared, scope="short"
    )
    long_lived.failed("a")
    short_lived.failed("old")
    await shared.flush()
    an_hour_ago = utcnow() - timedelta(hours=1)
    with transaction(engine, write=True) as connection:
        connection.execute(update(AuthFailure).values(updated_at=an_hour_ago))

    short_lived.failed("b")
    await shared.flush()

    with transaction(engine) as connection:
        kept = connection.execute(select(AuthFailure.scope, AuthFailure.subject))
        assert sorted(tuple(row) for row in kept) == [
            ("long", subject_hash("a")),
            ("short", subject_hash("b")),
        ]
