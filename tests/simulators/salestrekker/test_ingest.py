"""The simulator's webhooks, received by a real brokerhooks over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine

from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.runtime import Runtime
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store.database import transaction
from brokerhooks.store.events import EventRecord, list_events
from tests.helpers import add_broker
from tests.servers import serve_in_thread
from tests.simulators.salestrekker.conftest import API_KEY

pytestmark = pytest.mark.anyio


@dataclass
class Service:
    url: str
    engine: Engine
    broker_id: str

    def events(self) -> list[EventRecord]:
        """The broker's stored events, oldest first."""
        with transaction(self.engine) as connection:
            records = list_events(connection, broker_id=self.broker_id, limit=1000)
        return list(reversed(records))


@pytest.fixture
def service(settings: Settings, engine: Engine) -> Iterator[Service]:
    runtime = Runtime.build(settings, engine)
    broker = add_broker(engine, runtime.vault, api_key=API_KEY)
    with serve_in_thread(create_app(settings, runtime)) as url:
        yield Service(url, engine, broker.id)


async def test_simulated_journey_is_stored_as_events(service: Service) -> None:
    simulator = SalesTrekkerSimulator(API_KEY, service.url + "/hooks/salestrekker")

    deal_id = await simulator.create_deal(
        "Nguyen - Purchase", contact_id=simulator.JANE_ID
    )
    await simulator.move_deal(deal_id, "3. Needs Analysis")
    note_id = await simulator.add_note(deal_id, "Payslips received")
    await simulator.update_contact(simulator.JANE_ID, email="jane@example.org")
    await simulator.flush()

    # Acknowledged means stored: every webhook was answered 200.
    assert [sent.status for sent in simulator.sent_webhooks] == [200] * 4
    stored = [(e.type, e.entity_id, e.deal_id, e.status) for e in service.events()]
    assert stored == [
        ("dealCreated", deal_id, deal_id, "received"),
        ("dealChangesStage", deal_id, deal_id, "received"),
        ("noteCreated", note_id, deal_id, "received"),
        ("contactUpdated", simulator.JANE_ID, None, "received"),
    ]


async def test_webhooks_with_another_key_are_refused(service: Service) -> None:
    stranger = SalesTrekkerSimulator(
        "not-the-broker-key-0000000000000000000000", service.url + "/hooks/salestrekker"
    )

    await stranger.move_deal(stranger.DEAL_ID, "6. Approved")
    await stranger.flush()

    assert [sent.status for sent in stranger.sent_webhooks] == [401]
    assert service.events() == []
