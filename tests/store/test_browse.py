"""Browsing events: filters, keyset pages, counts, per broker."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Engine

from brokerhooks.config import Settings
from brokerhooks.security.secrets import Vault
from brokerhooks.store.browse import (
    EventFilter,
    event_broker,
    events_per_hour,
    page_events,
    status_counts,
)
from brokerhooks.store.database import transaction
from brokerhooks.store.types import utcnow
from tests.helpers import add_broker, queue_event


def test_pages_filters_and_tenants(settings: Settings, engine: Engine) -> None:
    vault = Vault(settings.fernet_keys)
    acme = add_broker(engine, vault, "acme", api_key="k1")
    other = add_broker(engine, vault, "other", api_key="k2")
    deal = str(uuid.uuid4())
    ids = [queue_event(engine, acme.id, "dealUpdated", deal) for _ in range(5)]
    contact = queue_event(engine, acme.id, "contactCreated", str(uuid.uuid4()))
    foreign = queue_event(engine, other.id, "dealUpdated", str(uuid.uuid4()))

    with transaction(engine) as connection:
        first, cursor = page_events(connection, EventFilter(broker_id=acme.id), limit=4)
        second, end = page_events(
            connection, EventFilter(broker_id=acme.id), before=cursor, limit=4
        )
        by_deal, _ = page_events(
            connection, EventFilter(broker_id=acme.id, deal_id=deal)
        )
        by_text, _ = page_events(
            connection, EventFilter(broker_id=acme.id, text="contactCreated")
        )
        wildcard, _ = page_events(connection, EventFilter(broker_id=acme.id, text="%"))
        everyone, _ = page_events(connection, EventFilter())
        old, _ = page_events(
            connection, EventFilter(until=utcnow() - timedelta(days=1))
        )
        counts = status_counts(connection, acme.id)
        hours = events_per_hour(connection, acme.id)
        owner = event_broker(connection, foreign)

    assert [e.id for e in first + second] == [contact, *reversed(ids)]
    assert end is None
    assert [e.id for e in by_deal] == list(reversed(ids))
    assert [e.id for e in by_text] == [contact]
    assert wildcard == []
    assert {e.broker for e in everyone} == {"acme", "other"}
    assert old == []
    assert counts == {"received": 6}
    assert len(hours) == 24
    assert hours[-1][1] == 6
    assert owner == other.id
