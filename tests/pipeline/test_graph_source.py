"""Microsoft 365 as an event source, end to end through both simulators.

A mail arrives in the simulated inbox, or a To Do task is ticked off; the
simulator notifies brokerhooks over loopback HTTP; the worker fetches the
item, matches it to the SalesTrekker deal, runs the broker's rules, and the
note appears in the SalesTrekker simulator. The worker also keeps the
subscriptions alive: renewal before expiry and every lifecycle notification.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.connectors.msgraph.subscriptions import SubscriptionService, renew_at
from brokerhooks.ingest.msgraph_events import (
    EVENT_SUBJECTS,
    GRAPH_SUBJECTS,
    RESOURCE_KINDS,
)
from brokerhooks.pipeline import enrich
from brokerhooks.pipeline.backtest import backtest
from brokerhooks.pipeline.rulebook import save_rule_source, split_rule_file
from brokerhooks.pipeline.service import build_worker
from brokerhooks.rules import fields
from brokerhooks.rules.recipes import get_recipe
from brokerhooks.rules.validate import load_rules
from brokerhooks.runtime import Runtime
from brokerhooks.simulators.msgraph import LoopbackCertificates, MicrosoftGraphSimulator
from brokerhooks.simulators.msgraph.mail import new_message
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.simulators.salestrekker.seed import DEAL_NAME
from brokerhooks.store import subscriptions as store
from brokerhooks.store.brokers import get_broker
from brokerhooks.store.connections import mark_m365_connected
from brokerhooks.store.database import transaction
from brokerhooks.store.events import event_details
from brokerhooks.store.models import Delivery, Event, GraphSubscription, Job
from brokerhooks.store.subscriptions import SubscriptionRecord
from brokerhooks.store.types import utcnow
from tests.connectors.msgraph.conftest import (
    ANN,
    add_connection,
    authority_url,
    certificates,
    sim,
)
from tests.helpers import add_broker, pipeline_idle, save_rules, wait_until
from tests.rules.test_fields import _conforms
from tests.servers import serve_in_thread

__all__ = ["authority_url", "certificates", "sim"]

API_KEY = "graph-source-key-1a2b3c4d5e6f7a8b9c0d"
JANE = "jane.citizen@example.com"
RECIPES: tuple[tuple[str, dict[str, str]], ...] = (
    ("stage-task", {"stage": "6. Approved", "list": "Deals"}),
    ("client-mail-note", {}),
    ("task-done-note", {}),
)


@dataclass
class Flow:
    salestrekker: SalesTrekkerSimulator
    graph: MicrosoftGraphSimulator
    engine: Engine
    service: SubscriptionService
    connection_id: str

    def run(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run simulator and service calls in an event loop of their own."""
        return asyncio.run(_awaited(work))

    def drive(self, change: Callable[[SalesTrekkerSimulator], Awaitable[Any]]) -> Any:
        async def run() -> Any:
            result = await change(self.salestrekker)
            await self.salestrekker.flush()
            return result

        return asyncio.run(run())

    def subscribe(self, kind: str, list_name: str | None = None) -> SubscriptionRecord:
        record: SubscriptionRecord = self.run(
            lambda: self.service.subscribe(
                self.connection_id, kind, list_name=list_name
            )
        )
        return record

    def mail(self, sender: str, subject: str, *, notify: bool = True) -> dict[str, Any]:
        name = "Jane Citizen" if sender == JANE else None
        message: dict[str, Any] = self.run(
            lambda: self.graph.deliver_mail(
                ANN,
                sender=sender,
                sender_name=name,
                subject=subject,
                body="Hello",
                notify=notify,
            )
        )
        return message

    def add_rules(self, text: str) -> None:
        """Store a rule file for the broker; its steps may use ``office``."""
        with transaction(self.engine) as db:
            broker_id = get_broker(db, "acme").id
        save_rules(self.engine, broker_id, text, connections=["office"])

    def wait(self, condition: Callable[[], bool], timeout: float = 30) -> None:
        wait_until(condition, lambda: f"events: {self.events()}", timeout)

    def idle(self) -> bool:
        return pipeline_idle(self.engine)

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with transaction(self.engine) as connection:
            query = select(Event.id).order_by(Event.id)
            if event_type is not None:
                query = query.where(Event.type == event_type)
            ids = list(connection.scalars(query))
            return [event_details(connection, event_id) for event_id in ids]

    def notes(self) -> list[str]:
        return [str(note["content"]) for note in self.salestrekker.state.notes.values()]

    def subscription(self, subscription_id: str) -> SubscriptionRecord:
        with transaction(self.engine) as connection:
            return store.get_subscription(connection, subscription_id)

    def renewals(self, subscription_id: str) -> list[datetime]:
        with transaction(self.engine) as connection:
            return list(
                connection.scalars(
                    select(Job.run_after).where(Job.ref == f"renew:{subscription_id}")
                )
            )

    def patches(self) -> int:
        return len(
            [
                r
                for r in self.graph.graph_requests("PATCH")
                if "/subscriptions/" in r.path
            ]
        )


async def _awaited(work: Callable[[], Awaitable[Any]]) -> Any:
    return await work()


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
    sim.notification_retry_delays = (0.05, 0.1)
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
            for recipe_id, values in RECIPES:
                text = get_recipe(recipe_id).render(values)
                for source in split_rule_file(
                    text, source_name=recipe_id, connections=["office"]
                ):
                    save_rule_source(db, broker.id, source)
        worker = build_worker(
            engine, settings, metrics=runtime.metrics, graph_transport=sim.transport()
        )
        with serve_in_thread(create_app(settings, runtime, worker)) as url:
            # The worker recreates subscriptions with the same public URL.
            settings.public_url = url
            salestrekker.webhook_url = url + "/hooks/salestrekker"
            service = SubscriptionService(
                engine, runtime.vault, settings, transport=sim.transport()
            )
            yield Flow(salestrekker, sim, engine, service, connection.id)


def warm_up(flow: Flow) -> None:
    """A deal event, so that the deal and Jane, its client, are known."""
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.update_deal(deal, description="warm up"))
    flow.wait(flow.idle)


# Rules on Graph events.


def test_a_clients_mail_becomes_a_note_on_their_deal(flow: Flow) -> None:
    warm_up(flow)
    flow.subscribe("inbox")

    message = flow.mail(JANE, "Settlement day")
    flow.wait(lambda: len(flow.events("messageCreated")) == 1 and flow.idle())

    [event] = flow.events("messageCreated")
    assert (event["source"], event["status"]) == ("msgraph", "done")
    assert event["entity_id"] == message["id"]
    assert event["deal_id"] == flow.salestrekker.DEAL_ID
    assert event["snapshot"]["from"]["address"] == JANE
    [run] = event["runs"]
    assert (run["rule"], run["outcome"], run["status"]) == (
        "client-mail-note",
        "fired",
        "succeeded",
    )
    assert any(
        note.startswith("Mail from Jane") and "Settlement day" in note
        for note in flow.notes()
    )
    # Answered at once, as Graph wants: nothing retried, nothing slow.
    assert [sent.status for sent in flow.graph.sent_notifications()] == [202]
    assert flow.graph.slow_deliveries() == []


def test_a_strangers_mail_is_kept_but_writes_no_note(flow: Flow) -> None:
    warm_up(flow)
    flow.subscribe("inbox")
    before = len(flow.notes())

    flow.mail("someone@elsewhere.example", "Special offer")
    flow.wait(lambda: len(flow.events("messageCreated")) == 1 and flow.idle())

    [event] = flow.events("messageCreated")
    assert event["status"] == "done"
    assert event["deal_id"] is None
    [run] = event["runs"]
    assert run["outcome"] == "condition_false"
    assert len(flow.notes()) == before


MAIL_RULE = """\
rules:
  - id: mail-on-deal
    trigger: messageCreated
    condition: deal != null && message.subject.contains("Settlement")
    actions:
      - kind: salestrekker_note
        params:
          content: "{{ deal.name }}: {{ message.subject }} from {{ contact.id }}"
"""


def test_a_back_test_of_a_mail_rule_sees_the_deal_as_it_was(flow: Flow) -> None:
    warm_up(flow)
    flow.subscribe("inbox")
    flow.mail(JANE, "Settlement day")
    flow.mail("someone@elsewhere.example", "Settlement offer")
    flow.wait(lambda: len(flow.events("messageCreated")) == 2 and flow.idle())
    # Renamed since: the back-test sees the name the deal had then.
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.update_deal(deal, name="Renamed later"))
    flow.wait(flow.idle)

    with transaction(flow.engine) as connection:
        report = backtest(
            connection,
            get_broker(connection, "acme"),
            load_rules(MAIL_RULE).rules,
            since=utcnow() - timedelta(hours=1),
            limit=100,
            timezone="Australia/Sydney",
        )

    mails = [e for e in report.entries if e.event.type == "messageCreated"]
    assert [entry.fired for entry in mails] == [True, False]
    [verdict] = mails[0].verdicts
    assert verdict.decision is not None
    params = verdict.decision.steps[0].params
    assert params is not None
    content = params["content"]
    assert content.startswith(f"{DEAL_NAME}: Settlement day from ")
    assert not content.endswith("from ")
    stranger = mails[1].verdicts[0].decision
    assert stranger is not None
    assert stranger.outcome == "condition_false"


def test_a_completed_task_becomes_a_note_on_its_deal(flow: Flow) -> None:
    warm_up(flow)
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.move_deal(deal, "6. Approved"))
    flow.wait(flow.idle)
    record = flow.subscribe("todo", "Deals")
    list_id = record.resource.split("/")[-2]
    [task] = flow.graph.tasks(ANN, list_id)

    flow.run(lambda: flow.graph.complete_task(ANN, list_id, task["id"]))
    flow.wait(lambda: len(flow.events("taskCompleted")) == 1 and flow.idle())

    [event] = flow.events("taskCompleted")
    assert event["deal_id"] == deal
    assert event["snapshot"]["status"] == "completed"
    [run] = event["runs"]
    assert (run["rule"], run["status"]) == ("task-done-note", "succeeded")
    assert f"Done in To Do: {task['title']}" in flow.notes()


COPY_TO_SELF = """\
rules:
  - id: copy-to-self
    trigger: messageCreated
    actions:
      - id: mail
        kind: send_mail
        connection: office
        params:
          to: "{{ message.to[0].address }}"
          subject: "Copy: {{ message.subject }}"
          body: "{{ message.bodyPreview }}"
"""


def test_a_mail_a_rule_sent_to_a_watched_inbox_is_an_echo(flow: Flow) -> None:
    flow.add_rules(COPY_TO_SELF)
    flow.subscribe("inbox")
    flow.mail(JANE, "Rate question")
    # The copy arrives in the inbox it was sent to, headers and all, and is
    # notified like any other mail.
    flow.wait(
        lambda: (
            len(flow.graph.sent_mail) == 1
            and len(flow.events("messageCreated")) == 2
            and flow.idle()
        )
    )

    first, copy = flow.events("messageCreated")
    [action] = [
        a
        for run in first["runs"]
        if run["rule"] == "copy-to-self"
        for a in run["actions"]
    ]
    assert copy["snapshot"]["brokerhooksKey"] == action["key"]
    assert copy["caused_by"]["action"] == action["key"]
    [run] = [run for run in copy["runs"] if run["rule"] == "copy-to-self"]
    assert (run["outcome"], run["status"]) == ("echo", "no_action")
    assert run["trace"]["echo"]["kind"] == "send_mail"
    assert len(flow.graph.sent_mail) == 1


def test_a_task_a_rule_made_comes_back_knowing_its_rule(flow: Flow) -> None:
    warm_up(flow)
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.move_deal(deal, "6. Approved"))
    flow.wait(flow.idle)
    record = flow.subscribe("todo", "Deals")

    flow.drive(lambda st: st.move_deal(deal, "4. Lodged"))
    flow.wait(flow.idle)
    flow.drive(lambda st: st.move_deal(deal, "6. Approved"))
    flow.wait(lambda: len(flow.events("taskCreated")) == 1 and flow.idle())

    [made] = flow.events("taskCreated")
    assert made["caused_by"]["rule"] == "stage-task"
    assert made["caused_by"]["kind"] == "todo_task"
    assert made["caused_by"]["rules"] == ["stage-task"]
    # A person ticking it off is not an echo: the note rule runs.
    list_id = record.resource.split("/")[-2]
    task = next(
        t for t in flow.graph.tasks(ANN, list_id) if t["id"] == made["entity_id"]
    )
    flow.run(lambda: flow.graph.complete_task(ANN, list_id, task["id"]))
    flow.wait(lambda: len(flow.events("taskCompleted")) == 1 and flow.idle())
    [done] = flow.events("taskCompleted")
    assert done["caused_by"] is None
    [run] = done["runs"]
    assert (run["rule"], run["outcome"]) == ("task-done-note", "fired")


def date_the_deal_twice(flow: Flow) -> tuple[str, date]:
    """Watch the calendar; give the deal a due date, then a week later.

    Returns the deal and its first due date, once the first date's event
    came back; the second date's work is still under way.
    """
    warm_up(flow)
    flow.subscribe("calendar")
    deal = flow.salestrekker.DEAL_ID
    due = date.today() + timedelta(days=28)
    flow.drive(lambda st: st.set_due_date(deal, due))
    flow.wait(lambda: len(flow.events("eventCreated")) == 1 and flow.idle())
    flow.drive(lambda st: st.set_due_date(deal, due + timedelta(days=7)))
    return deal, due


MOVED_NOTE = """\
rules:
  - id: moved-note
    trigger: eventUpdated
    condition: event.caused_by == null
    actions:
      - id: note
        kind: salestrekker_note
        params:
          content: "Moved in Outlook: {{ calendar_event.subject }}"
"""


def test_a_calendar_event_a_rule_moved_is_told_from_one_a_person_moved(
    flow: Flow,
) -> None:
    flow.add_rules(get_recipe("due-date-calendar").render({}))
    flow.add_rules(MOVED_NOTE)
    deal, due = date_the_deal_twice(flow)
    flow.wait(lambda: len(flow.events("eventUpdated")) == 1 and flow.idle())

    [made] = flow.events("eventCreated")
    [moved] = flow.events("eventUpdated")
    # The event names no client: its deal is the one its action was for.
    assert made["deal_id"] == moved["deal_id"] == deal
    assert made["caused_by"]["rule"] == "due-date-calendar"
    create, move = [
        a
        for event in flow.events("dealChangesDueDate")
        for run in event["runs"]
        for a in run["actions"]
    ]
    assert made["caused_by"]["action"] == create["key"]
    assert moved["caused_by"]["action"] == move["key"]
    assert moved["caused_by"]["kind"] == "calendar_event"
    [run] = [r for r in moved["runs"] if r["rule"] == "moved-note"]
    assert run["outcome"] == "condition_false"

    # The broker drags it to another day in Outlook: their own doing.
    [event] = flow.graph.events(ANN)
    flow.run(
        lambda: flow.graph.move_event(
            ANN,
            event["id"],
            start=f"{due + timedelta(days=9)}T09:00:00",
            end=f"{due + timedelta(days=9)}T10:00:00",
        )
    )
    flow.wait(lambda: len(flow.events("eventUpdated")) == 2 and flow.idle())

    by_person = flow.events("eventUpdated")[1]
    assert by_person["caused_by"] is None
    [run] = [r for r in by_person["runs"] if r["rule"] == "moved-note"]
    assert (run["outcome"], run["status"]) == ("fired", "succeeded")
    assert f"Moved in Outlook: Due: {DEAL_NAME}" in flow.notes()


REPLACING_CALENDAR = """\
rules:
  - id: settlement
    trigger: dealChangesDueDate
    condition: deal.dueDate != null
    actions:
      - id: event
        kind: calendar_event
        connection: office
        params:
          subject: "Settlement: {{ deal.name }}"
          start: "{{ deal.dueDate | date_add(hours=10) }}"
          on_date_change: cancel
  - id: gone-note
    trigger: eventDeleted
    condition: event.caused_by == null
    actions:
      - id: note
        kind: salestrekker_note
        params:
          content: "Deleted in Outlook: {{ calendar_event.subject }}"
"""


def test_a_calendar_event_a_rule_replaced_is_told_from_one_a_person_deleted(
    flow: Flow,
) -> None:
    flow.add_rules(REPLACING_CALENDAR)
    deal, _ = date_the_deal_twice(flow)
    flow.wait(
        lambda: (
            len(flow.events("eventCreated")) == 2
            and len(flow.events("eventDeleted")) == 1
            and flow.idle()
        )
    )

    first, second = flow.events("eventCreated")
    [withdrawn] = flow.events("eventDeleted")
    assert withdrawn["entity_id"] == first["entity_id"]
    assert withdrawn["deal_id"] == deal
    replacing = second["caused_by"]["action"]
    assert withdrawn["caused_by"]["action"] == replacing
    assert first["caused_by"]["action"] != replacing
    [run] = [r for r in withdrawn["runs"] if r["rule"] == "gone-note"]
    assert run["outcome"] == "condition_false"

    flow.run(lambda: flow.graph.delete_event(ANN, second["entity_id"]))
    flow.wait(lambda: len(flow.events("eventDeleted")) == 2 and flow.idle())

    by_person = flow.events("eventDeleted")[1]
    assert by_person["caused_by"] is None
    [run] = [r for r in by_person["runs"] if r["rule"] == "gone-note"]
    assert (run["outcome"], run["status"]) == ("fired", "succeeded")
    assert f"Deleted in Outlook: Settlement: {DEAL_NAME}" in flow.notes()


def test_graphs_repeats_and_forgeries_through_the_simulator(flow: Flow) -> None:
    flow.subscribe("inbox")
    flow.graph.duplicate_deliveries = 1
    flow.mail(JANE, "Twice")
    flow.graph.duplicate_deliveries = 0
    flow.graph.forge_client_states = 1
    flow.mail(JANE, "Forged")
    flow.wait(flow.idle)

    assert [e["snapshot"]["subject"] for e in flow.events("messageCreated")] == [
        "Twice"
    ]
    with transaction(flow.engine) as connection:
        outcomes = list(
            connection.scalars(
                select(Delivery.outcome)
                .where(Delivery.outcome != "validation", Delivery.source == "msgraph")
                .order_by(Delivery.received_at)
            )
        )
    assert outcomes == ["accepted", "duplicate", "rejected"]


# Keeping subscriptions alive.


def test_the_worker_renews_a_subscription_before_it_expires(flow: Flow) -> None:
    record = flow.subscribe("inbox")
    assert record.expires_at is not None
    [renewal] = flow.renewals(record.id)
    assert renewal < record.expires_at - timedelta(hours=30)

    # Early: the renewal only moves itself back to its time.
    with transaction(flow.engine, write=True) as connection:
        connection.execute(
            update(Job)
            .where(Job.kind == store.SUBSCRIPTION_JOB)
            .values(run_after=utcnow())
        )
    flow.wait(lambda: any(at > utcnow() for at in flow.renewals(record.id)))
    assert flow.patches() == 0

    # Due: Graph is asked for a new expiry, and the next renewal is queued.
    soon = utcnow() + timedelta(hours=1)
    with transaction(flow.engine, write=True) as connection:
        connection.execute(
            update(GraphSubscription)
            .where(GraphSubscription.id == record.id)
            .values(expires_at=soon)
        )
        connection.execute(
            update(Job)
            .where(Job.kind == store.SUBSCRIPTION_JOB)
            .values(run_after=utcnow())
        )
    flow.wait(lambda: flow.patches() == 1 and flow.idle())

    renewed = flow.subscription(record.id)
    assert renewed.expires_at is not None
    assert renewed.expires_at > soon + timedelta(hours=60)
    [at_graph] = flow.graph.active_subscriptions()
    assert abs(at_graph.expires_at - renewed.expires_at.timestamp()) < 1
    kind = RESOURCE_KINDS["inbox"]
    assert flow.renewals(record.id) == [renew_at(kind, renewed.expires_at)]


def make_renewal_due(flow: Flow, record: SubscriptionRecord) -> None:
    with transaction(flow.engine, write=True) as connection:
        connection.execute(
            update(GraphSubscription)
            .where(GraphSubscription.id == record.id)
            .values(expires_at=utcnow() + timedelta(hours=1))
        )
        connection.execute(
            update(Job)
            .where(Job.ref == f"renew:{record.id}")
            .values(run_after=utcnow())
        )


def test_a_renewal_that_finds_the_subscription_gone_recreates_it(
    flow: Flow,
) -> None:
    record = flow.subscribe("calendar")
    flow.graph.expire_subscription(str(record.graph_subscription_id))

    make_renewal_due(flow, record)
    flow.wait(lambda: flow.graph.active_subscriptions() != [] and flow.idle())

    recreated = flow.subscription(record.id)
    assert recreated.graph_subscription_id != record.graph_subscription_id
    assert recreated.status == "active"
    [renewal] = flow.renewals(record.id)
    assert utcnow() < renewal < utcnow() + timedelta(hours=1)


def test_a_renewal_graph_keeps_refusing_marks_the_subscription_failing(
    flow: Flow,
) -> None:
    record = flow.subscribe("inbox")
    flow.graph.inject_fault(
        403, method="PATCH", path="/v1.0/subscriptions/", times=None
    )

    make_renewal_due(flow, record)
    flow.wait(lambda: flow.subscription(record.id).status == "failing")

    failing = flow.subscription(record.id)
    assert "renew:" in str(failing.last_error)
    assert "403" in str(failing.last_error)
    [renewal] = flow.renewals(record.id)
    assert renewal > utcnow() + timedelta(minutes=20)


def test_reauthorization_required_renews(flow: Flow) -> None:
    record = flow.subscribe("calendar")

    flow.run(
        lambda: flow.graph.send_lifecycle(
            str(record.graph_subscription_id), "reauthorizationRequired"
        )
    )
    flow.wait(lambda: flow.patches() == 1 and flow.idle())

    renewed = flow.subscription(record.id)
    assert renewed.last_lifecycle_event == "reauthorizationRequired"
    assert renewed.renewed_at is not None
    assert record.renewed_at is not None
    assert renewed.renewed_at > record.renewed_at
    assert len(flow.renewals(record.id)) == 1


def test_a_removed_subscription_is_recreated_and_what_it_missed_is_found(
    flow: Flow,
) -> None:
    warm_up(flow)
    record = flow.subscribe("inbox")
    missed = flow.mail(JANE, "While nobody listened", notify=False)

    flow.run(
        lambda: flow.graph.send_lifecycle(
            str(record.graph_subscription_id), "subscriptionRemoved"
        )
    )
    flow.wait(lambda: len(flow.events("messageCreated")) == 1 and flow.idle())
    after = flow.mail(JANE, "Heard again")
    flow.wait(lambda: len(flow.events("messageCreated")) == 2 and flow.idle())

    recreated = flow.subscription(record.id)
    [at_graph] = flow.graph.active_subscriptions()
    assert recreated.graph_subscription_id == at_graph.id
    assert at_graph.id != record.graph_subscription_id
    assert recreated.status == "active"
    assert [e["entity_id"] for e in flow.events("messageCreated")] == [
        missed["id"],
        after["id"],
    ]
    assert any("While nobody listened" in note for note in flow.notes())


def test_missed_notifications_are_resynchronised(flow: Flow) -> None:
    warm_up(flow)
    record = flow.subscribe("inbox")
    lost = flow.mail(JANE, "Lost in transit", notify=False)

    flow.run(
        lambda: flow.graph.send_lifecycle(str(record.graph_subscription_id), "missed")
    )
    flow.wait(lambda: len(flow.events("messageCreated")) == 1 and flow.idle())

    [event] = flow.events("messageCreated")
    assert event["entity_id"] == lost["id"]
    assert event["payload"]["notification"]["delta"] is True
    assert event["delivery"]["id"]
    assert any("Lost in transit" in note for note in flow.notes())


# The shape of what rules see.


@pytest.mark.parametrize("all_changes", [False, True], ids=["typical", "all-changes"])
@pytest.mark.parametrize("event_type", fields.GRAPH_EVENT_TYPES)
def test_graph_samples_match_the_table(event_type: str, all_changes: bool) -> None:
    context = fields.sample_context(event_type, all_changes=all_changes)
    table = fields.variables(event_type)

    assert set(context) == set(fields.GRAPH_VARIABLES) == set(table)
    complaints = [
        complaint
        for name in fields.GRAPH_VARIABLES
        for complaint in _conforms(context[name], table[name], name)
    ]
    assert complaints == []


def test_graph_change_names_match_the_pipeline() -> None:
    for subject, schema in fields.GRAPH_CHANGES.items():
        assert set(schema.fields) == set(enrich.GRAPH_CHANGE_FIELDS[subject])


def test_every_graph_event_type_has_a_subject_with_fields() -> None:
    assert set(EVENT_SUBJECTS.values()) == set(GRAPH_SUBJECTS)
    assert set(fields.GRAPH_SNAPSHOTS) == set(GRAPH_SUBJECTS)


def test_projected_simulator_items_match_the_table(
    sim: MicrosoftGraphSimulator,
) -> None:
    """What Graph answers, projected, is what the field table says."""
    user = sim.user(ANN)
    message = new_message(
        user, sender=JANE, sender_name="Jane", subject="Hi", body="Hello there"
    )
    task = {
        "id": "t1",
        "title": "Call",
        "status": "notStarted",
        "importance": "normal",
        "body": {"content": "", "contentType": "text"},
        "createdDateTime": "2025-03-14T00:00:00Z",
        "lastModifiedDateTime": "2025-03-14T00:00:00Z",
        "categories": [],
        "linkedResources": [{"applicationName": "brokerhooks", "externalId": "k"}],
    }
    drive_item = user.drive.to_json(user.drive.item("root"))
    event = {
        "id": "e1",
        "subject": "Settlement",
        "body": {"contentType": "html", "content": "<p>Keys</p>"},
        "start": {"dateTime": "2025-04-11T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2025-04-11T11:00:00", "timeZone": "UTC"},
        "location": {"displayName": "Office"},
        "attendees": [
            {"type": "required", "emailAddress": {"address": JANE, "name": "Jane"}}
        ],
        "organizer": {"emailAddress": {"address": ANN}},
    }

    projected = {
        "message": enrich.project_message(message),
        "task": enrich.project_task(task, "l1"),
        "drive_item": enrich.project_drive_item(drive_item),
        "calendar_event": enrich.project_calendar_event(event),
    }

    for subject, data in projected.items():
        schema = fields.GRAPH_SNAPSHOTS[subject]  # type: ignore[index]
        assert _conforms(copy.deepcopy(data), schema, subject) == [], subject
    assert projected["message"]["from"] == {"name": "Jane", "address": JANE}
    assert json.dumps(projected)  # snapshots are stored as JSON
