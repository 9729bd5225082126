"""A store with two brokers, each with rules, processed events, runs and a token.

``world`` builds it through the store's own functions, the way the worker
would leave it; ``client`` is the whole app (``brokerhooks.app``), so
requests go through the ``/api/v1`` mount.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.pipeline.decide import decide, record, rule_context
from brokerhooks.pipeline.enrich import Fetched
from brokerhooks.pipeline.rulebook import RuleBook
from brokerhooks.rules.fields import sample_context
from brokerhooks.runtime import Runtime
from brokerhooks.security.secrets import Vault
from brokerhooks.store import api_tokens, processing, queue
from brokerhooks.store.database import transaction
from brokerhooks.store.types import utcnow
from tests.helpers import add_broker, queue_event, save_rules

RULES = """\
rules:
  - id: stage-file
    name: A file when the stage changes
    trigger: dealChangesStage
    condition: has(changes.stage)
    actions:
      - id: file
        kind: write_file
        params:
          path: "stages/{{ deal.id }}.txt"
          content: "{{ deal.name }} is now in {{ deal.stage.name }}"
  - id: created-file
    trigger: dealCreated
    actions:
      - kind: write_file
        params:
          path: "created/{{ deal.id }}.txt"
"""

# A rule id that only acme has: rule ids are each broker's own names.
ACME_ONLY = """\
rules:
  - id: acme-only
    trigger: noteCreated
    actions:
      - kind: write_file
        params:
          path: "notes/{{ note.id }}.txt"
"""


@dataclass
class Tenant:
    """One broker's records, as the tests address them."""

    id: str
    name: str
    token: str
    processed: list[str] = field(default_factory=list)
    """Events processed, oldest first; each ran the broker's rules."""
    waiting: str = ""
    """An event still queued."""
    runs: list[int] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    engine: Engine
    acme: Tenant
    other: Tenant


def add_token(engine: Engine, broker_id: str, name: str = "tests") -> str:
    token = api_tokens.new_token()
    with transaction(engine, write=True) as connection:
        api_tokens.add_api_token(
            connection,
            broker_id=broker_id,
            name=name,
            token_hash=api_tokens.hash_token(token),
        )
    return token.reveal()


def process(engine: Engine, event_id: str, changes: dict[str, Any]) -> list[int]:
    """Finish an event as the worker would, from sample data; its run ids.

    The event must be the only one queued.
    """
    with transaction(engine, write=True) as connection:
        [job] = queue.claim(connection, worker="tests", limit=1, lease_seconds=60)
        assert job.event_id == event_id
        event = processing.load_event(connection, event_id)
        deal = {**sample_context("dealChangesStage")["deal"], "id": event.entity_id}
        attempt = processing.start_attempt(
            connection, event_id=event_id, number=1, worker="tests"
        )
        snapshot = processing.add_snapshot(
            connection,
            broker_id=event.broker_id,
            subject="deal",
            entity_id=event.entity_id,
            event_id=event_id,
            data=deal,
        )
        processing.complete(
            connection,
            job_id=job.id,
            worker="tests",
            event_id=event_id,
            attempt_id=attempt,
            snapshot_id=snapshot,
            previous_snapshot_id=None,
            changes=changes,
        )
        context = rule_context(
            event,
            Fetched("deal", event.entity_id, deal),
            None,
            changes,
            {"id": event.broker_id, "name": "broker", "timezone": None},
            utcnow(),
        )
        rules = RuleBook().triggered_by(connection, event.broker_id, event.type)
        run_ids = record(connection, event, decide(rules, context), context)
        # The actions' jobs are not the point here: drop them, so that the
        # next event's job is the only one to claim.
        for action_job in queue.claim(
            connection, worker="tests", limit=100, lease_seconds=60
        ):
            queue.finish(connection, job_id=action_job.id, worker="tests")
    return run_ids


def stage_change() -> dict[str, Any]:
    return {"stage": sample_context("dealChangesStage")["changes"]["stage"]}


def make_tenant(engine: Engine, vault: Vault, name: str, api_key: str) -> Tenant:
    broker = add_broker(engine, vault, name, api_key=api_key)
    save_rules(engine, broker.id, RULES)
    tenant = Tenant(broker.id, broker.name, add_token(engine, broker.id))
    deal = str(uuid.uuid4())
    for event_type, changes in (
        ("dealCreated", {}),
        ("dealChangesStage", stage_change()),
    ):
        event_id = queue_event(engine, broker.id, event_type, deal)
        tenant.runs += process(engine, event_id, changes)
        tenant.processed.append(event_id)
    return tenant


@pytest.fixture
def runtime(settings: Settings, engine: Engine) -> Runtime:
    return Runtime.build(settings, engine)


@pytest.fixture
def world(settings: Settings, engine: Engine) -> World:
    vault = Vault(settings.fernet_keys)
    acme = make_tenant(engine, vault, "acme", "api-test-key-acme-0123456789")
    save_rules(engine, acme.id, ACME_ONLY)
    other = make_tenant(engine, vault, "other", "api-test-key-other-0123456789")
    for tenant in (acme, other):
        tenant.waiting = queue_event(
            engine, tenant.id, "contactCreated", str(uuid.uuid4())
        )
    return World(engine, acme, other)


@pytest.fixture
def lone(settings: Settings, engine: Engine) -> Tenant:
    """A broker with a token and nothing else, for tests of bad requests."""
    broker = add_broker(engine, Vault(settings.fernet_keys), "lone")
    return Tenant(broker.id, broker.name, add_token(engine, broker.id))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(
    settings: Settings, runtime: Runtime
) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app, without its lifespan: the API needs no writer or worker."""
    transport = httpx.ASGITransport(app=create_app(settings, runtime))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://brokerhooks.test"
    ) as client:
        yield client
