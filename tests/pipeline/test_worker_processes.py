"""Worker processes: killed mid-job, and several sharing one PostgreSQL queue."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import Engine, func, select

from brokerhooks.config import Settings
from brokerhooks.security.secrets import Vault
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Attempt, Event, Snapshot
from tests.conftest import DATABASE
from tests.helpers import add_broker, queue_event
from tests.servers import serve_in_thread

API_KEY = "worker-test-key-99aa88bb77cc66dd55ee44ff"


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "brokerhooks", "worker", *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(condition: object, timeout: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.fixture
def simulator() -> Iterator[tuple[SalesTrekkerSimulator, str]]:
    sim = SalesTrekkerSimulator(API_KEY)
    with serve_in_thread(sim.app) as url:
        yield sim, url


def test_a_job_of_a_killed_worker_is_finished_once_after_its_lease_expires(
    settings: Settings,
    settings_env: dict[str, str],
    engine: Engine,
    simulator: tuple[SalesTrekkerSimulator, str],
) -> None:
    sim, url = simulator
    broker = add_broker(
        engine, Vault(settings.fernet_keys), api_key=API_KEY, salestrekker_url=url
    )
    event_id = queue_event(engine, broker.id, "dealUpdated", sim.DEAL_ID)
    env = {
        **settings_env,
        "BROKERHOOKS_LEASE_SECONDS": "2",
        "BROKERHOOKS_POLL_SECONDS": "0.1",
    }
    sim.faults.latency = 3.0

    def attempt_outcomes() -> list[str]:
        with transaction(engine) as connection:
            return list(
                connection.scalars(
                    select(Attempt.outcome)
                    .where(Attempt.event_id == event_id)
                    .order_by(Attempt.id)
                )
            )

    doomed = start_worker(env)
    wait_for(lambda: attempt_outcomes() == ["running"])
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    sim.faults.latency = 0.0

    survivor = start_worker(env)
    try:
        wait_for(lambda: "done" in attempt_outcomes())
    finally:
        survivor.send_signal(signal.SIGTERM)
        assert survivor.wait(timeout=30) == 0

    assert attempt_outcomes() == ["abandoned", "done"]
    with transaction(engine) as connection:
        status = connection.scalar(select(Event.status).where(Event.id == event_id))
        snapshots = connection.scalar(
            select(func.count())
            .select_from(Snapshot)
            .where(Snapshot.event_id == event_id)
        )
    assert status == "done"
    # The deal and its primary client: one snapshot each, written once.
    assert snapshots == 2


@pytest.mark.slow
@pytest.mark.skipif(DATABASE != "postgresql", reason="several workers need PostgreSQL")
def test_three_workers_process_a_thousand_events_once_each_in_deal_order(
    settings: Settings,
    settings_env: dict[str, str],
    engine: Engine,
    simulator: tuple[SalesTrekkerSimulator, str],
) -> None:
    sim, url = simulator
    broker = add_broker(
        engine, Vault(settings.fernet_keys), api_key=API_KEY, salestrekker_url=url
    )

    async def create_deals() -> list[str]:
        return [await sim.create_deal(f"Deal {n}") for n in range(50)]

    deals = asyncio.run(create_deals())
    expected: dict[str, list[str]] = defaultdict(list)
    types = (
        "dealUpdated",
        "dealChangesStage",
        "dealChangesOwner",
        "dealChangesDueDate",
    )
    for n in range(20):
        for deal in deals:
            event_id = queue_event(engine, broker.id, types[n % 4], deal)
            expected[deal].append(event_id)
    env = {
        **settings_env,
        "BROKERHOOKS_POLL_SECONDS": "0.1",
        "BROKERHOOKS_COALESCE_SECONDS": "0",
        "BROKERHOOKS_SALESTREKKER_RATE_PER_SECOND": "10000",
    }

    def pending() -> int:
        with transaction(engine) as connection:
            return (
                connection.scalar(
                    select(func.count())
                    .select_from(Event)
                    .where(Event.status != "done")
                )
                or 0
            )

    workers = [start_worker(env, "--concurrency", "4") for _ in range(3)]
    try:
        wait_for(lambda: pending() == 0, timeout=300)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=30) for worker in workers]
    assert codes == [0, 0, 0]

    with transaction(engine) as connection:
        rows = connection.execute(
            select(
                Attempt.event_id,
                Attempt.worker,
                Attempt.outcome,
                Attempt.started_at,
                Attempt.finished_at,
                Event.deal_id,
            )
            .join(Event, Event.id == Attempt.event_id)
            .order_by(Attempt.started_at)
        ).all()
    assert len(rows) == 1000
    assert {row.outcome for row in rows} == {"done"}
    assert len({row.event_id for row in rows}) == 1000
    assert len({row.worker for row in rows}) == 3
    by_deal: dict[str, list[tuple[str, datetime, datetime]]] = defaultdict(list)
    for row in rows:
        by_deal[row.deal_id].append((row.event_id, row.started_at, row.finished_at))
    for deal, attempts in by_deal.items():
        assert [event_id for event_id, _, _ in attempts] == expected[deal]
        for (_, _, finished), (_, started, _) in itertools.pairwise(attempts):
            assert finished <= started, f"two events of deal {deal} overlapped"
