"""Processing end to end: simulator webhooks in, snapshots and changes out.

SalesTrekker is the simulator, over real HTTP on loopback; brokerhooks is
the real app with its embedded worker, on the real store.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, select

from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.pipeline.service import build_worker
from brokerhooks.runtime import Runtime
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store import processing
from brokerhooks.store.database import transaction
from brokerhooks.store.events import event_details
from brokerhooks.store.models import Event
from tests.helpers import add_broker, queue_event
from tests.servers import serve_in_thread

API_KEY = "sim-api-key-6c1f0e2d3b4a59687766554433221100"
SETTLED = ("done", "needs_attention", "dead", "coalesced")


@dataclass
class Setup:
    simulator: SalesTrekkerSimulator
    engine: Engine
    broker_id: str

    def drive(self, change: Callable[[SalesTrekkerSimulator], Awaitable[Any]]) -> Any:
        """Change the simulator's data and wait for its webhooks to be sent."""

        async def run() -> Any:
            result = await change(self.simulator)
            await self.simulator.flush()
            return result

        return asyncio.run(run())

    def events(self) -> list[dict[str, Any]]:
        with transaction(self.engine) as connection:
            ids = list(connection.scalars(select(Event.id).order_by(Event.id)))
            return [event_details(connection, event_id) for event_id in ids]

    def settled(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait until ``count`` events exist and none is still pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count and all(e["status"] in SETTLED for e in events):
                return events
            time.sleep(0.05)
        raise AssertionError(f"events did not settle: {self.events()}")


@pytest.fixture
def setup(settings: Settings, engine: Engine) -> Iterator[Setup]:
    settings = settings.model_copy(
        update={"poll_seconds": 0.05, "coalesce_seconds": 0.0}
    )
    simulator = SalesTrekkerSimulator(API_KEY)
    with serve_in_thread(simulator.app) as simulator_url:
        runtime = Runtime.build(settings, engine)
        broker = add_broker(
            engine, runtime.vault, api_key=API_KEY, salestrekker_url=simulator_url
        )
        worker = build_worker(engine, settings, metrics=runtime.metrics)
        with serve_in_thread(create_app(settings, runtime, worker)) as url:
            simulator.webhook_url = url + "/hooks/salestrekker"
            yield Setup(simulator, engine, broker.id)


def test_a_stage_change_is_enriched_with_names_and_changes(setup: Setup) -> None:
    deal = setup.drive(lambda sim: sim.create_deal("Nguyen refinance", value=450000))
    setup.settled(1)

    setup.drive(lambda sim: sim.move_deal(deal, "6. Approved"))
    created, moved = setup.settled(2)

    assert (created["type"], created["status"]) == ("dealCreated", "done")
    assert created["changes"] == {}
    assert created["snapshot"]["name"] == "Nguyen refinance"
    assert created["snapshot"]["workflow"]["name"] == "Home Loan"
    assert (moved["type"], moved["status"]) == ("dealChangesStage", "done")
    stage = moved["changes"]["stage"]
    assert stage["from"]["name"] == "1. Initial Enquiry"
    assert stage["to"] == {
        "id": setup.simulator.stage_id("6. Approved"),
        "name": "6. Approved",
    }
    assert moved["previous"]["stage"]["name"] == "1. Initial Enquiry"
    assert [a["outcome"] for a in moved["attempts"]] == ["done"]


def test_a_note_event_fetches_the_note_and_its_deal(setup: Setup) -> None:
    deal = setup.simulator.DEAL_ID

    setup.drive(lambda sim: sim.add_note(deal, "Client called about valuation"))
    [note] = setup.settled(1)

    assert note["type"] == "noteCreated"
    assert note["deal_id"] == deal
    assert note["snapshot"]["content"] == "Client called about valuation"
    with transaction(setup.engine) as connection:
        deal_snapshot = processing.latest_snapshot(
            connection, broker_id=setup.broker_id, subject="deal", entity_id=deal
        )
    assert deal_snapshot is not None
    assert deal_snapshot.data["id"] == deal


def test_a_deleted_deal_needs_attention(setup: Setup) -> None:
    missing = "6f0e9b9e-0000-4000-8000-000000000001"
    event_id = queue_event(setup.engine, setup.broker_id, "dealUpdated", missing)

    [event] = setup.settled(1)

    assert event["id"] == event_id
    assert event["status"] == "needs_attention"
    assert missing in event["status_reason"]


def test_schema_drift_parks_events_and_replay_finishes_them(setup: Setup) -> None:
    setup.simulator.remove_field("Ticket", "idStage")
    deal = setup.simulator.DEAL_ID
    setup.drive(lambda sim: sim.set_owner(deal, sim.ASSISTANT_ID))
    [parked] = setup.settled(1)
    assert parked["status"] == "needs_attention"
    assert "brokerhooks salestrekker check" in parked["status_reason"]

    setup.simulator.restore_schema()
    with transaction(setup.engine, write=True) as connection:
        assert processing.replay(connection, parked["id"])
    [replayed] = setup.settled(1)

    assert replayed["status"] == "done"
    assert [a["outcome"] for a in replayed["attempts"]] == ["needs_attention", "done"]


def test_a_tenant_without_the_guessed_deal_fields_still_processes_deals(
    setup: Setup,
) -> None:
    for field in ("dueDate", "isWon", "isLost", "isSettled", "isInProgress"):
        setup.simulator.remove_field("Ticket", field)
    deal = setup.drive(lambda sim: sim.create_deal("Patel purchase", value=610000))
    setup.settled(1)

    setup.drive(lambda sim: sim.move_deal(deal, "6. Approved"))
    created, moved = setup.settled(2)

    assert [created["status"], moved["status"]] == ["done", "done"]
    assert moved["snapshot"]["dueDate"] is None
    assert moved["snapshot"]["isWon"] is None
    assert moved["changes"]["stage"]["to"]["name"] == "6. Approved"


def test_a_missing_note_query_parks_note_events(setup: Setup) -> None:
    setup.simulator.remove_field("Query", "note")

    setup.drive(lambda sim: sim.add_note(sim.DEAL_ID, "hello"))
    [event] = setup.settled(1)

    assert event["status"] == "needs_attention"
    assert "brokerhooks salestrekker check" in event["status_reason"]


def test_server_errors_are_retried_until_they_pass(setup: Setup) -> None:
    setup.simulator.fail_requests(2, status=503)
    event_id = queue_event(
        setup.engine, setup.broker_id, "dealUpdated", setup.simulator.DEAL_ID
    )

    # The retry waits for the backoff (base 2 s by default, jittered).
    [event] = setup.settled(1, timeout=60)

    assert event["id"] == event_id
    assert event["status"] == "done"
    outcomes = [attempt["outcome"] for attempt in event["attempts"]]
    assert outcomes[-1] == "done"
    assert "retry" in outcomes
    assert json.dumps(event["snapshot"])
