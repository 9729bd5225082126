"""Small helpers shared by tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from brokerhooks.ingest.salestrekker_events import subject_of
from brokerhooks.pipeline.rulebook import save_rule_source, split_rule_file
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import brokers, runs
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.database import transaction
from brokerhooks.store.events import accepted_event_write
from brokerhooks.store.models import RECEIVED, Event, Job
from brokerhooks.store.queue import ordering_key
from brokerhooks.store.types import utcnow, uuid7

# A rule that writes a note for every note: without the echo guard, without end.
ANSWERING_NOTES = """\
rules:
  - id: answer
    trigger: noteCreated
    actions:
      - id: reply
        kind: salestrekker_note
        params:
          content: "Seen: {{ note.content }}"
"""


def add_broker(
    engine: Engine,
    vault: Vault,
    name: str = "acme",
    api_key: str = "test-api-key-acme-0123456789abcdef",
    salestrekker_url: str = "https://acme.salestrekker.com",
) -> BrokerRecord:
    key = Secret(api_key)
    with transaction(engine, write=True) as connection:
        return brokers.create_broker(
            connection,
            name=name,
            salestrekker_url=salestrekker_url,
            api_key_encrypted=vault.encrypt(key),
            api_key_hash=vault.lookup_hash(key),
        )


def queue_event(
    engine: Engine,
    broker_id: str,
    event_type: str,
    entity_id: str,
    deal_id: str | None = None,
    received_at: datetime | None = None,
) -> str:
    """Store an event and its job exactly as ingest does; return its id."""
    event_id = uuid7()
    when = received_at or utcnow()
    delivery_id = uuid7()
    subject = subject_of(event_type)
    if subject == "deal":
        deal_id = entity_id
    payload = {"event": event_type, "id": entity_id}
    if subject == "note":
        payload["idDeal"] = deal_id or ""
    body = json.dumps(payload)
    event: dict[str, object] = {
        "id": event_id,
        "broker_id": broker_id,
        "source": "salestrekker",
        "type": event_type,
        "entity_id": entity_id,
        "deal_id": deal_id,
        "status": RECEIVED,
        "payload": body,
        "received_at": when,
        "delivery_id": delivery_id,
    }
    delivery = {
        "id": delivery_id,
        "source": "salestrekker",
        "received_at": when,
        "client_address": "127.0.0.1",
        "status_code": 200,
        "outcome": "accepted",
        "reason": None,
        "broker_id": broker_id,
        "body_size": len(body),
        "body_sha256": None,
        "event_id": event_id,
    }
    write = accepted_event_write(
        event, delivery, ordering_key=ordering_key(broker_id, entity_id, deal_id)
    )
    with transaction(engine, write=True) as connection:
        for table, row in write.rows:
            connection.execute(table.insert(), [row])
    return event_id


def wait_until(
    condition: Callable[[], bool],
    describe: Callable[[], object],
    timeout: float = 30,
) -> None:
    """Poll ``condition``; on timeout fail with what ``describe`` shows."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; {describe()}")
        time.sleep(0.05)


def pipeline_idle(engine: Engine) -> bool:
    """No job is due and no event is waiting or being processed."""
    with transaction(engine) as connection:
        pending = connection.scalar(
            select(Job.id).where(Job.run_after <= utcnow()).limit(1)
        )
        busy = connection.scalar(
            select(Event.id)
            .where(Event.status.in_(("received", "processing")))
            .limit(1)
        )
    return pending is None and busy is None


def save_rules(
    engine: Engine,
    broker_id: str,
    text: str,
    *,
    connections: list[str] | None = None,
    source_name: str = "rules.yaml",
) -> None:
    """Store the rules of a rule file for a broker, as `rules apply` does."""
    with transaction(engine, write=True) as connection:
        for source in split_rule_file(
            text, source_name=source_name, connections=connections
        ):
            save_rule_source(connection, broker_id, source)


def schedule_one_action(
    connection: Connection,
    *,
    broker_id: str,
    event_id: str,
    kind: str,
    deal_id: str | None = None,
    connection_name: str | None = None,
    params: dict[str, Any] | None = None,
) -> str:
    """A fired run of rule ``r`` whose step ``s`` is queued now; its ledger key."""
    run_id = runs.insert_run(
        connection,
        broker_id=broker_id,
        event_id=event_id,
        rule_id="r",
        outcome="fired",
        status=runs.PENDING,
        trace={},
    )
    key = runs.action_key(event_id, "r", "s")
    runs.schedule_action(
        connection,
        key=key,
        run_id=run_id,
        broker_id=broker_id,
        event_id=event_id,
        deal_id=deal_id,
        rule_id="r",
        step_id="s",
        position=0,
        kind=kind,
        connection_name=connection_name,
        run_at=utcnow(),
        schedule=None,
        params=params or {},
    )
    return key
