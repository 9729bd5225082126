"""The group writer: shared commits, faithful rows, failures kept apart."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, select

from brokerhooks.config import Settings
from brokerhooks.errors import StoreUnavailable
from brokerhooks.security.secrets import Vault
from brokerhooks.store.database import make_engine, transaction
from brokerhooks.store.events import (
    DELIVERIES,
    EVENTS,
    JOBS,
    accepted_event_write,
    delivery_write,
)
from brokerhooks.store.models import RECEIVED, UNSUPPORTED
from brokerhooks.store.queue import ordering_key
from brokerhooks.store.types import utcnow, uuid7
from brokerhooks.store.writer import GroupWriter, Write
from tests.helpers import add_broker

Scenario = Callable[[GroupWriter], Awaitable[Any]]


def run(engine: Engine, scenario: Scenario) -> Any:
    """Run ``scenario`` against a started writer, then stop the writer."""

    async def main() -> Any:
        writer = GroupWriter(engine)
        await writer.start()
        try:
            return await scenario(writer)
        finally:
            await writer.stop()

    return asyncio.run(main())


def delivery_row(broker_id: str | None, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": uuid7(),
        "source": "salestrekker",
        "received_at": utcnow(),
        "client_address": "127.0.0.1",
        "broker_id": broker_id,
        "event_id": None,
        "body_size": 70,
        "body_sha256": "ab" * 32,
        "status_code": 200,
        "outcome": "accepted",
        "reason": None,
    }
    row.update(fields)
    return row


def accepted(
    broker_id: str,
    *,
    entity_id: str | None = None,
    status: str = RECEIVED,
    received_at: datetime | None = None,
) -> Write:
    """The rows ingest writes for one accepted delivery."""
    entity_id = entity_id or str(uuid.uuid4())
    delivery = delivery_row(broker_id, received_at=received_at or utcnow())
    event = {
        "id": uuid7(),
        "broker_id": broker_id,
        "source": "salestrekker",
        "type": "dealChangesStage",
        "entity_id": entity_id,
        "deal_id": entity_id,
        "status": status,
        "payload": json.dumps({"event": "dealChangesStage", "id": entity_id}),
        "received_at": delivery["received_at"],
        "delivery_id": delivery["id"],
    }
    delivery["event_id"] = event["id"]
    return accepted_event_write(
        event, delivery, ordering_key=ordering_key(broker_id, entity_id, entity_id)
    )


@pytest.fixture
def broker_id(settings: Settings, engine: Engine) -> str:
    return add_broker(engine, Vault(settings.fernet_keys)).id


def stored(engine: Engine, table: Any, order_by: Any) -> list[dict[str, Any]]:
    with transaction(engine) as connection:
        rows = connection.execute(select(table).order_by(order_by)).all()
    return [dict(row._mapping) for row in rows]


def test_concurrent_writes_share_commits(engine: Engine, broker_id: str) -> None:
    writes = [accepted(broker_id) for _ in range(60)]
    commits: list[int] = []

    async def scenario(writer: GroupWriter) -> None:
        writer.on_commit = lambda: commits.append(1)
        await asyncio.gather(*(writer.write(write) for write in writes))

    run(engine, scenario)

    assert len(stored(engine, EVENTS, EVENTS.c.id)) == 60
    assert len(stored(engine, JOBS, JOBS.c.id)) == 60
    assert len(stored(engine, DELIVERIES, DELIVERIES.c.id)) == 60
    assert 1 <= len(commits) < 60


def test_rows_read_back_as_they_were_given(engine: Engine, broker_id: str) -> None:
    """Values bypass SQLAlchemy on the way in; they must come back the same."""
    sydney = timezone(timedelta(hours=11))
    moment = datetime(2026, 12, 4, 5, 35, 0, 123456, tzinfo=sydney)
    write = accepted(broker_id, received_at=moment)
    rejected = delivery_row(
        None,
        received_at=datetime(2026, 12, 3, 18, 35, tzinfo=UTC),
        client_address=None,
        body_sha256=None,
        body_size=0,
        status_code=400,
        outcome="bad_request",
        reason="body is not valid JSON: 'ünïcode' \"quoted\" \\ \n and more",
    )

    async def scenario(writer: GroupWriter) -> None:
        writer.write_later(delivery_write(rejected))
        await writer.write(write)

    run(engine, scenario)

    [event] = stored(engine, EVENTS, EVENTS.c.id)
    given_event = write.rows[0][1]
    assert {name: event[name] for name in given_event} == given_event
    assert event["received_at"] == moment
    assert event["received_at"].tzinfo is not None
    [job] = stored(engine, JOBS, JOBS.c.id)
    assert {name: job[name] for name in write.rows[1][1]} == write.rows[1][1]
    assert (job["attempts"], job["lease_owner"], job["lease_expires_at"]) == (
        0,
        None,
        None,
    )
    deliveries = stored(engine, DELIVERIES, DELIVERIES.c.received_at)
    assert deliveries == [rejected, write.rows[2][1]]


def test_job_ids_follow_arrival_order(engine: Engine, broker_id: str) -> None:
    """Within a commit and across commits: the queue relies on this order."""
    writes = [accepted(broker_id) for _ in range(40)]

    async def scenario(writer: GroupWriter) -> None:
        first = asyncio.gather(*(writer.write(write) for write in writes[:25]))
        await asyncio.sleep(0)
        await asyncio.gather(first, *(writer.write(write) for write in writes[25:]))

    run(engine, scenario)

    jobs = stored(engine, JOBS, JOBS.c.id)
    assert [job["event_id"] for job in jobs] == [
        write.rows[0][1]["id"] for write in writes
    ]


def test_unsupported_events_get_no_job(engine: Engine, broker_id: str) -> None:
    writes = [accepted(broker_id), accepted(broker_id, status=UNSUPPORTED)]

    async def scenario(writer: GroupWriter) -> None:
        await asyncio.gather(*(writer.write(write) for write in writes))

    run(engine, scenario)

    assert len(stored(engine, EVENTS, EVENTS.c.id)) == 2
    assert len(stored(engine, JOBS, JOBS.c.id)) == 1
    assert len(stored(engine, DELIVERIES, DELIVERIES.c.id)) == 2


def test_a_bad_write_fails_alone(engine: Engine, broker_id: str) -> None:
    """A batch that cannot commit is retried write by write."""
    first = accepted(broker_id)
    again = Write().add(EVENTS, dict(first.rows[0][1]))  # the same primary key
    others = [accepted(broker_id) for _ in range(5)]

    async def scenario(writer: GroupWriter) -> list[BaseException | None]:
        await writer.write(first)
        results = await asyncio.gather(
            *(writer.write(write) for write in [*others[:2], again, *others[2:]]),
            return_exceptions=True,
        )
        return list(results)

    results = run(engine, scenario)

    assert [type(result) for result in results] == [
        type(None),
        type(None),
        StoreUnavailable,
        type(None),
        type(None),
        type(None),
    ]
    assert len(stored(engine, EVENTS, EVENTS.c.id)) == 6


def test_queued_rejections_are_committed_before_stop(
    engine: Engine, broker_id: str
) -> None:
    rows = [delivery_row(None, status_code=401, outcome="unauthorized") for _ in "ab"]

    async def scenario(writer: GroupWriter) -> None:
        for row in rows:
            writer.write_later(delivery_write(row))

    run(engine, scenario)

    assert stored(engine, DELIVERIES, DELIVERIES.c.id) == rows


def test_an_unreachable_store_is_reported(settings: Settings, broker_id: str) -> None:
    if settings.is_sqlite:
        url = "sqlite:////nonexistent-folder/brokerhooks.db"
    else:
        url = "postgresql://nobody@127.0.0.1:1/none"
    unreachable = make_engine(settings.model_copy(update={"database_url": url}))

    async def scenario(writer: GroupWriter) -> None:
        await writer.write(accepted(broker_id))

    with pytest.raises(StoreUnavailable):
        run(unreachable, scenario)
    unreachable.dispose()


def test_no_writes_after_stop(engine: Engine, broker_id: str) -> None:
    async def main() -> None:
        writer = GroupWriter(engine)
        await writer.start()
        await writer.stop()
        with pytest.raises(StoreUnavailable, match="shutting down"):
            await writer.write(accepted(broker_id))

    asyncio.run(main())
