"""An action's ``remember`` counts only while its worker holds the job.

A worker that stalled past its lease, and whose job another worker took
over, must not replace what the new owner remembered: the new owner acts
on it (a saved draft it is about to send, say).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import pytest
from sqlalchemy import Engine, select, update

from brokerhooks.actions import registry
from brokerhooks.actions.base import ActionContext, ActionResult, Services
from brokerhooks.config import Settings
from brokerhooks.connectors.errors import TransientError
from brokerhooks.pipeline.act import ActionRunner
from brokerhooks.security.secrets import Vault
from brokerhooks.store import queue, runs
from brokerhooks.store.database import transaction
from brokerhooks.store.models import RUNNING, Job
from brokerhooks.store.queue import ClaimedJob
from tests.helpers import add_broker, queue_event, schedule_one_action

DEAL = "5d0a9a52-6f3b-4c8e-9d51-0e2a4b7c1f33"
WORKER_A = "worker-a"
WORKER_B = "worker-b"


@dataclass
class Probe:
    """An action kind that remembers an id, after ``before`` has run."""

    engine: Engine
    before: Callable[[], None]
    name: ClassVar[str] = "probe"
    guarantee: ClassVar[str] = "exactly-once"

    async def perform(self, ctx: ActionContext) -> ActionResult:
        await asyncio.to_thread(self.before)
        assert ctx.remember is not None
        await ctx.remember("made-by-this-try")
        raise TransientError("the second step failed; try again later")


@pytest.fixture
def action_job(engine: Engine, settings: Settings) -> tuple[str, ClaimedJob]:
    """A ledger entry of kind ``probe`` and its job, claimed by worker A."""
    broker = add_broker(engine, Vault(settings.fernet_keys))
    event_id = queue_event(engine, broker.id, "dealUpdated", DEAL)
    with transaction(engine, write=True) as connection:
        # The event's own job stays out of the claim below.
        connection.execute(update(Job).values(status=RUNNING))
        key = schedule_one_action(
            connection,
            broker_id=broker.id,
            event_id=event_id,
            kind="probe",
            deal_id=DEAL,
        )
        [job] = queue.claim(connection, worker=WORKER_A, limit=5, lease_seconds=60)
    assert job.ref == key
    return key, job


def perform(
    engine: Engine, settings: Settings, job: ClaimedJob, before: Callable[[], None]
) -> str:
    probe = Probe(engine, before)
    kinds = {**registry.KINDS, "probe": probe}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "KINDS", kinds)
        runner = ActionRunner(
            engine=engine,
            settings=settings,
            services=lambda broker_id: cast(Services, None),
        )
        return asyncio.run(runner.run(job, WORKER_A))


def lease_owner(engine: Engine, job_id: int) -> Any:
    with transaction(engine) as connection:
        return connection.scalar(select(Job.lease_owner).where(Job.id == job_id))


def test_a_try_that_holds_its_job_remembers_what_it_made(
    engine: Engine, settings: Settings, action_job: tuple[str, ClaimedJob]
) -> None:
    key, job = action_job

    outcome = perform(engine, settings, job, before=lambda: None)

    assert outcome == "retry"
    with transaction(engine) as connection:
        entry = runs.find_action(connection, key)
    assert entry is not None
    assert entry.remote_id == "made-by-this-try"
    assert entry.status == runs.SCHEDULED


def test_a_try_whose_job_was_taken_over_does_not_replace_the_new_owners_id(
    engine: Engine, settings: Settings, action_job: tuple[str, ClaimedJob]
) -> None:
    key, job = action_job

    def stall_and_lose_the_job() -> None:
        # Worker B took the expired lease over and remembered its own id.
        with transaction(engine, write=True) as connection:
            connection.execute(
                update(Job).where(Job.id == job.id).values(lease_owner=WORKER_B)
            )
            runs.remember_remote_id(connection, key, "made-by-the-new-owner")

    outcome = perform(engine, settings, job, before=stall_and_lose_the_job)

    assert outcome == "lease_lost"
    with transaction(engine) as connection:
        entry = runs.find_action(connection, key)
    assert entry is not None
    assert entry.remote_id == "made-by-the-new-owner"
    assert entry.status == runs.RUNNING  # worker B's try is still under way
    assert lease_owner(engine, job.id) == WORKER_B
