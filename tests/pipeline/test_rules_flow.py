"""Rules end to end: a SalesTrekker webhook in, work done in Microsoft 365.

SalesTrekker is its simulator over loopback HTTP; Microsoft 365 is its
simulator, msal reaching the identity provider over HTTPS and Graph calls
going in-process; brokerhooks is the real app with its worker on the real
store.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update

from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.pipeline.service import build_worker
from brokerhooks.runtime import Runtime
from brokerhooks.simulators.msgraph import LoopbackCertificates, MicrosoftGraphSimulator
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store import processing, queue, runs
from brokerhooks.store.connections import mark_m365_connected
from brokerhooks.store.database import transaction
from brokerhooks.store.events import event_details
from brokerhooks.store.models import ActionRecord, Event, Job, Run
from tests.connectors.msgraph.conftest import (
    ANN,
    add_connection,
    authority_url,
    certificates,
    sim,
)
from tests.helpers import (
    add_broker,
    pipeline_idle,
    save_rules,
    schedule_one_action,
    wait_until,
)
from tests.servers import serve_in_thread

__all__ = ["authority_url", "certificates", "sim"]

API_KEY = "rules-flow-key-1a2b3c4d5e6f7a8b9c0d"
RULES = """\
rules:
  - id: approved
    trigger: dealChangesStage
    condition: has(changes.stage) && changes.stage.to.name == "6. Approved"
    actions:
      - id: task
        kind: todo_task
        connection: office
        params:
          list: Deals
          title: "Order valuation for {{ deal.name }}"
      - id: note
        kind: salestrekker_note
        params:
          content: "Valuation task created for {{ deal.name }}"
  - id: reminder
    trigger: dealCreated
    condition: deal.dueDate != null
    actions:
      - id: file
        kind: write_file
        schedule: {before: deal.dueDate, offset: 2d}
        params:
          path: "reminders/{{ deal.id }}.txt"
          content: "Settlement of {{ deal.name }} is near"
"""


@dataclass
class Flow:
    salestrekker: SalesTrekkerSimulator
    graph: MicrosoftGraphSimulator
    engine: Engine
    broker_id: str

    def drive(self, change: Callable[[SalesTrekkerSimulator], Awaitable[Any]]) -> Any:
        async def run() -> Any:
            result = await change(self.salestrekker)
            await self.salestrekker.flush()
            return result

        return asyncio.run(run())

    def wait(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        wait_until(condition, lambda: f"actions: {self.actions()}", timeout)

    def idle(self) -> bool:
        return pipeline_idle(self.engine)

    def actions(self) -> list[dict[str, Any]]:
        with transaction(self.engine) as connection:
            rows = connection.execute(
                select(
                    ActionRecord.key, ActionRecord.status, ActionRecord.run_at
                ).order_by(ActionRecord.created_at)
            ).all()
        return [dict(row._mapping) for row in rows]

    def events_of(self, event_type: str) -> list[dict[str, Any]]:
        with transaction(self.engine) as connection:
            ids = connection.scalars(
                select(Event.id).where(Event.type == event_type).order_by(Event.id)
            )
            return [event_details(connection, event_id) for event_id in list(ids)]

    def tasks(self) -> list[dict[str, Any]]:
        deals = [
            found
            for found in self.graph.task_lists(ANN)
            if found.get("displayName") == "Deals"
        ]
        return self.graph.tasks(ANN, deals[0]["id"]) if deals else []


@pytest.fixture
def flow(
    settings: Settings,
    engine: Engine,
    sim: MicrosoftGraphSimulator,
    authority_url: str,
    certificates: LoopbackCertificates,
    tmp_path: Path,
) -> Iterator[Flow]:
    settings = settings.model_copy(
        update={
            "poll_seconds": 0.05,
            "coalesce_seconds": 0.0,
            "files_folder": tmp_path / "files",
            "retry_base_seconds": 0.05,
        }
    )
    salestrekker = SalesTrekkerSimulator(API_KEY)
    with serve_in_thread(salestrekker.app) as salestrekker_url:
        runtime = Runtime.build(settings, engine)
        broker = add_broker(
            engine, runtime.vault, api_key=API_KEY, salestrekker_url=salestrekker_url
        )
        connection = add_connection(
            engine,
            runtime.vault,
            broker,
            authority_url,
            kind="app_only",
            name="office",
            mailbox=ANN,
        )
        with transaction(engine, write=True) as db:
            mark_m365_connected(db, connection.id)
        save_rules(engine, broker.id, RULES, connections=["office"])
        worker = build_worker(
            engine, settings, metrics=runtime.metrics, graph_transport=sim.transport()
        )
        with serve_in_thread(create_app(settings, runtime, worker)) as url:
            salestrekker.webhook_url = url + "/hooks/salestrekker"
            yield Flow(salestrekker, sim, engine, broker.id)


def test_a_stage_change_creates_a_task_and_a_note_and_explains_itself(
    flow: Flow,
) -> None:
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.update_deal(deal, description="warm up"))
    flow.wait(flow.idle)

    flow.drive(lambda st: st.move_deal(deal, "6. Approved"))
    flow.wait(lambda: len(flow.actions()) == 2 and flow.idle())

    [moved] = flow.events_of("dealChangesStage")
    [run] = moved["runs"]
    assert (run["rule"], run["outcome"], run["status"]) == (
        "approved",
        "fired",
        "succeeded",
    )
    assert run["trace"]["condition"]["value"] is True
    task, note = run["actions"]
    assert (task["kind"], task["status"]) == ("todo_task", "done")
    assert task["params"]["title"].startswith("Order valuation for ")
    assert [t["title"] for t in flow.tasks()] == [task["params"]["title"]]
    assert (note["kind"], note["status"]) == ("salestrekker_note", "done")
    assert any(
        found["content"].startswith("Valuation task created")
        for found in flow.salestrekker.state.notes.values()
    )


def test_a_rule_whose_condition_is_false_leaves_a_run_that_says_why(
    flow: Flow,
) -> None:
    deal = flow.salestrekker.DEAL_ID

    flow.drive(lambda st: st.move_deal(deal, "4. Lodged"))
    flow.wait(flow.idle)

    [moved] = flow.events_of("dealChangesStage")
    [run] = moved["runs"]
    assert (run["outcome"], run["status"]) == ("condition_false", "no_action")
    assert run["actions"] == []
    assert flow.tasks() == []


def test_replay_never_makes_a_second_task(flow: Flow) -> None:
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.update_deal(deal, description="warm up"))
    flow.wait(flow.idle)
    flow.drive(lambda st: st.move_deal(deal, "6. Approved"))
    flow.wait(lambda: len(flow.actions()) == 2 and flow.idle())
    [moved] = flow.events_of("dealChangesStage")

    with transaction(flow.engine, write=True) as connection:
        assert processing.replay(connection, moved["id"])
    flow.wait(lambda: len(flow.events_of("dealChangesStage")[0]["runs"]) == 2)
    flow.wait(flow.idle)

    replayed = flow.events_of("dealChangesStage")[0]
    _, second = replayed["runs"]
    assert second["trace"]["steps"][0]["ledger"] == "already done"
    assert len(flow.tasks()) == 1
    assert [a["status"] for a in flow.actions()] == ["done", "done"]


def test_an_action_cut_off_after_acting_is_not_repeated(flow: Flow) -> None:
    """The state a worker killed between acting and recording leaves behind.

    The task exists in To Do, the ledger entry says running, and the job's
    lease has expired: the next try must find the task, not make another.
    """
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.update_deal(deal, description="warm up"))
    flow.wait(flow.idle)
    flow.drive(lambda st: st.move_deal(deal, "6. Approved"))
    flow.wait(lambda: len(flow.actions()) == 2 and flow.idle())
    task_key = flow.actions()[0]["key"]
    [task] = flow.tasks()

    with transaction(flow.engine, write=True) as connection:
        entry = runs.find_action(connection, task_key)
        assert entry is not None
        attempts = [*entry.attempts, {"number": 2, "worker": "dead", "started_at": "x"}]
        connection.execute(
            update(ActionRecord)
            .where(ActionRecord.key == task_key)
            .values(status=runs.RUNNING, attempts=json.dumps(attempts))
        )
        queue.enqueue(
            connection,
            kind=runs.RUN_ACTION,
            broker_id=entry.broker_id,
            event_id=entry.event_id,
            ref=task_key,
            ordering_key=None,
        )
    flow.wait(lambda: flow.actions()[0]["status"] == runs.DONE and flow.idle())

    assert [found["id"] for found in flow.tasks()] == [task["id"]]
    with transaction(flow.engine) as connection:
        again = runs.find_action(connection, task_key)
    assert again is not None
    assert again.remote_id == task["id"]
    assert again.output is not None
    assert again.output["done"] == "found"


MAIL_RULE = """\
rules:
  - id: approved-mail
    trigger: dealChangesStage
    condition: has(changes.stage) && changes.stage.to.name == "6. Approved"
    actions:
      - id: mail
        kind: send_mail
        connection: office
        params:
          to: jane@example.com
          subject: "{{ deal.name }} is approved"
          body: "Approved."
"""


def test_a_mail_is_sent_once_across_a_failed_send_and_a_dead_worker(
    flow: Flow,
) -> None:
    """The draft's id, kept in the ledger, carries over to every later try."""
    save_rules(flow.engine, flow.broker_id, MAIL_RULE, connections=["office"])
    flow.graph.inject_fault(400, method="POST", path="/send", times=1)
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.update_deal(deal, description="warm up"))
    flow.wait(flow.idle)
    flow.drive(lambda st: st.move_deal(deal, "6. Approved"))

    def mail_entry() -> runs.LedgerEntry | None:
        with transaction(flow.engine) as connection:
            keys = connection.scalars(
                select(ActionRecord.key).where(ActionRecord.kind == "send_mail")
            )
            key = next(iter(keys), None)
            return runs.find_action(connection, key) if key else None

    # The send was refused: the action failed, the draft is remembered.
    flow.wait(lambda: (e := mail_entry()) is not None and e.status == runs.FAILED)
    failed = mail_entry()
    assert failed is not None
    [draft] = flow.graph.user(ANN).drafts
    assert failed.remote_id == draft
    assert flow.graph.sent_mail == []

    # A person replays it: the same draft is sent.
    with transaction(flow.engine, write=True) as connection:
        runs.requeue(connection, failed.key)
    flow.wait(lambda: (e := mail_entry()) is not None and e.status == runs.DONE)
    assert len(flow.graph.sent_mail) == 1

    # A worker that died after sending, before the ledger said done.
    with transaction(flow.engine, write=True) as connection:
        connection.execute(
            update(ActionRecord)
            .where(ActionRecord.key == failed.key)
            .values(status=runs.RUNNING)
        )
        queue.enqueue(
            connection,
            kind=runs.RUN_ACTION,
            broker_id=failed.broker_id,
            event_id=failed.event_id,
            ref=failed.key,
            ordering_key=None,
        )
    flow.wait(lambda: (e := mail_entry()) is not None and e.status == runs.DONE)
    flow.wait(flow.idle)

    [mail] = flow.graph.sent_mail
    assert mail.subject.endswith("is approved")
    done = mail_entry()
    assert done is not None
    assert done.remote_id == draft


def test_a_scheduled_step_follows_the_due_date(flow: Flow) -> None:
    due = date.today() + timedelta(days=30)
    deal = flow.drive(lambda st: st.create_deal("Dated deal", due_date=due))
    flow.wait(lambda: len(flow.actions()) == 1 and flow.idle())
    [scheduled] = flow.actions()
    assert scheduled["status"] == runs.SCHEDULED
    first_time = scheduled["run_at"]

    later = due + timedelta(days=10)
    flow.drive(lambda st: st.set_due_date(deal, later))
    flow.wait(lambda: flow.actions()[0]["run_at"] != first_time)
    moved = flow.actions()[0]
    assert (moved["run_at"] - first_time).days == 10
    with transaction(flow.engine) as connection:
        job = connection.execute(
            select(Job.run_after).where(Job.ref == moved["key"])
        ).scalar_one()
    assert job == moved["run_at"]

    flow.drive(lambda st: st.set_due_date(deal, None))
    flow.wait(lambda: flow.actions()[0]["status"] == runs.CANCELLED)
    with transaction(flow.engine) as connection:
        assert connection.scalar(select(Job.id).where(Job.ref == moved["key"])) is None


def test_actions_waiting_for_a_connection_resume_when_it_is_connected(
    settings: Settings, engine: Engine
) -> None:
    from tests.helpers import queue_event

    broker = add_broker(engine, Runtime.build(settings, engine).vault)
    event_id = queue_event(
        engine, broker.id, "dealCreated", "5b0a9a57-0000-4000-8000-000000000001"
    )
    with transaction(engine, write=True) as connection:
        key = schedule_one_action(
            connection,
            broker_id=broker.id,
            event_id=event_id,
            kind="send_mail",
            connection_name="office",
        )
        runs.end_action(connection, key, status=runs.WAITING, error="sign in again")
        connection.execute(delete(Job).where(Job.ref == key))
    assert queue_count(engine, key) == 0
    from brokerhooks.security.secrets import Secret
    from brokerhooks.store.connections import create_m365_connection

    vault = Runtime.build(settings, engine).vault
    with transaction(engine, write=True) as connection:
        record = create_m365_connection(
            connection,
            broker_id=broker.id,
            name="office",
            kind="app_only",
            tenant_id="t",
            client_id="c",
            client_secret_encrypted=vault.encrypt(Secret("s")),
            authority_url="https://login.example",
            graph_url="https://graph.example",
            mailbox="a@example.com",
        )
        mark_m365_connected(connection, record.id)

    assert queue_count(engine, key) == 1
    with transaction(engine) as connection:
        entry = runs.find_action(connection, key)
    assert entry is not None
    assert entry.status == runs.SCHEDULED


def queue_count(engine: Engine, key: str) -> int:
    with transaction(engine) as connection:
        return len(list(connection.scalars(select(Job.id).where(Job.ref == key))))


def test_failed_runs_are_not_pushed_out_by_successes(
    settings: Settings, engine: Engine
) -> None:
    from tests.helpers import queue_event

    broker = add_broker(engine, Runtime.build(settings, engine).vault)
    event_id = queue_event(engine, broker.id, "dealCreated", str(uuid.uuid4()))
    with transaction(engine, write=True) as connection:
        failed = runs.insert_run(
            connection,
            broker_id=broker.id,
            event_id=event_id,
            rule_id="r",
            outcome="fired",
            status=runs.FAILED,
            trace={},
        )
        for _ in range(5):
            runs.insert_run(
                connection,
                broker_id=broker.id,
                event_id=event_id,
                rule_id="r",
                outcome="fired",
                status=runs.SUCCEEDED,
                trace={},
            )
        runs.prune_runs(connection, broker.id, "r", runs.SUCCEEDED, keep=2)
        kept = {
            (row.id, row.status)
            for row in connection.execute(select(Run.id, Run.status))
        }

    assert (failed, runs.FAILED) in kept
    assert sum(1 for _, status in kept if status == runs.SUCCEEDED) == 2
