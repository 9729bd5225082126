"""The queue and the worker: order, retries, parking, replay, coalescing.

These tests use a recording reader in place of SalesTrekker, to control
timing and failures; tests/pipeline/test_enrichment.py runs the same path
against the SalesTrekker simulator.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from brokerhooks.config import Settings
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.pipeline.process import Backoff, EventProcessor
from brokerhooks.pipeline.worker import Worker
from brokerhooks.security.secrets import Vault
from brokerhooks.store import processing, queue
from brokerhooks.store.database import transaction
from brokerhooks.store.events import get_event
from brokerhooks.store.models import Attempt, Event, Job, Snapshot
from brokerhooks.store.types import utcnow
from tests.helpers import add_broker, queue_event


class RecordingReader:
    """Answers fetches with a deal built from the id; records the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.in_flight: dict[str, int] = defaultdict(int)
        self.max_in_flight: dict[str, int] = defaultdict(int)
        self.failures: dict[str, list[Exception]] = {}
        self.stage: dict[str, str] = {}
        self.pause = 0.0

    async def fetch_deal(self, deal_id: str) -> dict[str, Any]:
        self.calls.append(deal_id)
        self.in_flight[deal_id] += 1
        self.max_in_flight[deal_id] = max(
            self.max_in_flight[deal_id], self.in_flight[deal_id]
        )
        try:
            await asyncio.sleep(random.uniform(0, self.pause))
            failures = self.failures.get(deal_id)
            if failures:
                raise failures.pop(0)
            stage = self.stage.get(deal_id, "s1")
            return {
                "id": deal_id,
                "idStage": stage,
                "stage": {"id": stage, "name": stage},
                "idClients": [],
            }
        finally:
            self.in_flight[deal_id] -= 1

    async def fetch_contact(self, contact_id: str) -> dict[str, Any]:
        return {"id": contact_id}

    async def fetch_note(self, note_id: str) -> dict[str, Any]:
        return {"id": note_id, "content": "hello"}


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "retry_base_seconds": 0.01,
            "retry_max_seconds": 0.05,
            "poll_seconds": 0.02,
            "coalesce_seconds": 0.0,
        }
    )


def make_worker(
    engine: Engine, settings: Settings, reader: RecordingReader, concurrency: int = 4
) -> Worker:
    processor = EventProcessor(
        engine=engine, settings=settings, readers=lambda _broker_id: reader
    )
    return Worker(
        engine=engine, settings=settings, processor=processor, concurrency=concurrency
    )


def drain(
    engine: Engine, worker: Worker, until: Callable[[], bool] | None = None
) -> None:
    """Run the worker until the queue is empty (or ``until`` holds)."""

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        for _ in range(3000):
            await asyncio.sleep(0.01)
            if until is not None and until():
                break
            if until is None and _queue_empty(engine) and not worker._running:
                break
        else:
            raise AssertionError("the queue did not drain")
        await worker.stop()
        await task

    asyncio.run(main())


def _queue_empty(engine: Engine) -> bool:
    with transaction(engine) as connection:
        return queue.count_jobs(connection) == 0


def status_of(engine: Engine, event_id: str) -> str:
    with transaction(engine) as connection:
        return get_event(connection, event_id).status


def attempts(engine: Engine, event_id: str) -> list[tuple[str, str | None]]:
    with transaction(engine) as connection:
        return [
            (attempt["outcome"], attempt["error"])
            for attempt in processing.attempts_of(connection, event_id)
        ]


@pytest.fixture
def broker_id(engine: Engine, settings: Settings) -> str:
    return add_broker(engine, Vault(settings.fernet_keys)).id


def test_events_of_one_deal_run_in_order_and_never_two_at_once(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    deals = [str(uuid.uuid4()) for _ in range(6)]
    expected: dict[str, list[str]] = defaultdict(list)
    for _ in range(8):
        for deal in deals:
            event_id = queue_event(engine, broker_id, "dealUpdated", deal)
            expected[deal].append(event_id)
    reader = RecordingReader()
    reader.pause = 0.01

    drain(engine, make_worker(engine, fast_settings, reader, concurrency=4))

    with transaction(engine) as connection:
        rows = connection.execute(
            select(Event.id, Event.deal_id, Event.processed_at, Event.status)
        ).all()
    assert {row.status for row in rows} == {"done"}
    for deal in deals:
        processed = sorted(
            (row for row in rows if row.deal_id == deal),
            key=lambda row: row.processed_at,
        )
        assert [row.id for row in processed] == expected[deal]
        assert reader.max_in_flight[deal] == 1
    assert max(reader.in_flight.values()) == 0
    # Different deals did run side by side.
    assert len(reader.calls) == 48


def test_transient_failures_are_retried(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    deal = str(uuid.uuid4())
    event_id = queue_event(engine, broker_id, "dealChangesStage", deal)
    reader = RecordingReader()
    reader.failures[deal] = [TransientError("503 from SalesTrekker"), TimeoutError()]

    drain(engine, make_worker(engine, fast_settings, reader))

    assert status_of(engine, event_id) == "done"
    assert attempts(engine, event_id) == [
        ("retry", "TransientError: 503 from SalesTrekker"),
        ("retry", "TimeoutError"),
        ("done", None),
    ]


def test_a_deal_waits_for_its_retrying_event(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    deal = str(uuid.uuid4())
    first = queue_event(engine, broker_id, "dealChangesStage", deal)
    second = queue_event(engine, broker_id, "dealChangesOwner", deal)
    reader = RecordingReader()
    reader.failures[deal] = [TransientError("busy")]

    drain(engine, make_worker(engine, fast_settings, reader))

    with transaction(engine) as connection:
        done = {
            event_id: get_event(connection, event_id).status
            for event_id in (first, second)
        }
        order = list(
            connection.scalars(
                select(Attempt.event_id)
                .where(Attempt.outcome == "done")
                .order_by(Attempt.id)
            )
        )
    assert done == {first: "done", second: "done"}
    assert order == [first, second]


def test_events_die_after_max_attempts(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    settings = fast_settings.model_copy(update={"max_attempts": 3})
    deal = str(uuid.uuid4())
    event_id = queue_event(engine, broker_id, "dealUpdated", deal)
    reader = RecordingReader()
    reader.failures[deal] = [TransientError(f"failure {n}") for n in range(10)]

    drain(engine, make_worker(engine, settings, reader))

    with transaction(engine) as connection:
        stored = connection.execute(
            select(Event.status, Event.status_reason).where(Event.id == event_id)
        ).one()
    assert stored.status == "dead"
    assert stored.status_reason == (
        "gave up after 3 attempts; last error: TransientError: failure 2"
    )
    assert [outcome for outcome, _ in attempts(engine, event_id)] == [
        "retry",
        "retry",
        "dead",
    ]


def test_permanent_errors_park_the_event_without_retrying(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    deal = str(uuid.uuid4())
    event_id = queue_event(engine, broker_id, "dealUpdated", deal)
    later = queue_event(engine, broker_id, "dealUpdated", deal)
    reader = RecordingReader()
    reason = f"SalesTrekker has no deal {deal}; was it deleted?"
    reader.failures[deal] = [PermanentError(reason)]

    drain(engine, make_worker(engine, fast_settings, reader))

    with transaction(engine) as connection:
        stored = connection.execute(
            select(Event.status, Event.status_reason).where(Event.id == event_id)
        ).one()
    assert (stored.status, stored.status_reason) == ("needs_attention", reason)
    assert attempts(engine, event_id) == [("needs_attention", reason)]
    # A parked event does not hold its deal up.
    assert status_of(engine, later) == "done"


def test_replay_runs_a_dead_event_again(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    settings = fast_settings.model_copy(update={"max_attempts": 1})
    deal = str(uuid.uuid4())
    event_id = queue_event(engine, broker_id, "dealUpdated", deal)
    reader = RecordingReader()
    reader.failures[deal] = [TransientError("down")]
    drain(engine, make_worker(engine, settings, reader))
    assert status_of(engine, event_id) == "dead"

    with transaction(engine, write=True) as connection:
        assert processing.replay(connection, event_id) is True
        assert processing.replay(connection, event_id) is False  # already queued
    assert status_of(engine, event_id) == "received"
    drain(engine, make_worker(engine, settings, reader))

    assert status_of(engine, event_id) == "done"
    assert [outcome for outcome, _ in attempts(engine, event_id)] == ["dead", "done"]


def test_replay_of_a_done_event_compares_with_the_same_previous_snapshot(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    deal = str(uuid.uuid4())
    reader = RecordingReader()
    queue_event(engine, broker_id, "dealCreated", deal)
    drain(engine, make_worker(engine, fast_settings, reader))
    reader.stage[deal] = "s2"
    moved = queue_event(engine, broker_id, "dealChangesStage", deal)
    drain(engine, make_worker(engine, fast_settings, reader))

    with transaction(engine, write=True) as connection:
        processing.replay(connection, moved)
    drain(engine, make_worker(engine, fast_settings, reader))

    with transaction(engine) as connection:
        changes = json.loads(
            connection.scalar(select(Event.changes).where(Event.id == moved)) or ""
        )
    assert changes["stage"]["from"]["id"] == "s1"
    assert changes["stage"]["to"]["id"] == "s2"


def test_a_burst_is_processed_once_against_the_latest_state(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    settings = fast_settings.model_copy(update={"coalesce_seconds": 5.0})
    deal, other = str(uuid.uuid4()), str(uuid.uuid4())
    start = utcnow()
    burst = [
        queue_event(
            engine,
            broker_id,
            "dealUpdated",
            deal,
            received_at=start + timedelta(seconds=n),
        )
        for n in range(4)
    ]
    late = queue_event(
        engine,
        broker_id,
        "dealUpdated",
        deal,
        received_at=start + timedelta(seconds=30),
    )
    different_type = queue_event(engine, broker_id, "dealChangesStage", deal)
    elsewhere = queue_event(engine, broker_id, "dealUpdated", other)
    reader = RecordingReader()

    drain(engine, make_worker(engine, settings, reader))

    with transaction(engine) as connection:
        rows = {
            row.id: (row.status, row.coalesced_into)
            for row in connection.execute(
                select(Event.id, Event.status, Event.coalesced_into)
            )
        }
    assert [rows[event_id] for event_id in burst] == [
        ("coalesced", burst[3]),
        ("coalesced", burst[3]),
        ("coalesced", burst[3]),
        ("done", None),
    ]
    assert rows[late] == ("done", None)
    assert rows[different_type] == ("done", None)
    assert rows[elsewhere] == ("done", None)
    assert reader.calls.count(deal) == 3


def test_first_event_has_no_previous_snapshot_and_later_ones_have_changes(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    deal = str(uuid.uuid4())
    reader = RecordingReader()
    first = queue_event(engine, broker_id, "dealCreated", deal)
    drain(engine, make_worker(engine, fast_settings, reader))
    reader.stage[deal] = "s5"
    second = queue_event(engine, broker_id, "dealChangesStage", deal)
    drain(engine, make_worker(engine, fast_settings, reader))

    with transaction(engine) as connection:
        rows = {
            row.id: row
            for row in connection.execute(
                select(
                    Event.id,
                    Event.changes,
                    Event.snapshot_id,
                    Event.previous_snapshot_id,
                )
            )
        }
        snapshots = connection.scalar(
            select(Snapshot.id).where(Snapshot.event_id == second)
        )
    assert rows[first].previous_snapshot_id is None
    assert json.loads(rows[first].changes) == {}
    assert rows[second].previous_snapshot_id == rows[first].snapshot_id
    assert rows[second].snapshot_id == snapshots
    assert json.loads(rows[second].changes) == {
        "stage": {"from": {"id": "s1", "name": "s1"}, "to": {"id": "s5", "name": "s5"}}
    }


def test_stop_releases_unfinished_jobs_without_counting_the_try(
    engine: Engine, fast_settings: Settings, broker_id: str
) -> None:
    deal = str(uuid.uuid4())
    event_id = queue_event(engine, broker_id, "dealUpdated", deal)
    reader = RecordingReader()
    reader.pause = 30.0
    worker = make_worker(engine, fast_settings, reader)

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        while not reader.calls:
            await asyncio.sleep(0.01)
        await worker.stop(grace=0.05)
        await task

    asyncio.run(main())

    with transaction(engine) as connection:
        job = connection.execute(select(Job.status, Job.attempts)).one()
    assert tuple(job) == ("queued", 0)
    assert status_of(engine, event_id) == "received"
    assert attempts(engine, event_id) == [("released", "worker shut down")]


def test_backoff_grows_and_honours_retry_after() -> None:
    backoff = Backoff(base=1.0, cap=60.0)

    delays = [backoff.delay(attempt) for attempt in range(1, 9)]

    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(60.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.delay(1, retry_after=30.0) == 30.0
