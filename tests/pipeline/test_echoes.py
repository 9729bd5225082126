"""Echoes: a rule never runs on what its own work caused.

The flow is the real one (see ``test_rules_flow``): notes written by a rule
come back from the SalesTrekker simulator as ``noteCreated`` webhooks over
loopback HTTP, and To Do tasks as Microsoft Graph events.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select

from brokerhooks.config import Settings
from brokerhooks.pipeline.backtest import backtest
from brokerhooks.pipeline.echoes import cause_of
from brokerhooks.rules.validate import load_rules
from brokerhooks.security.secrets import Vault
from brokerhooks.store import runs
from brokerhooks.store.brokers import get_broker_by_id
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Event
from brokerhooks.store.types import utcnow
from tests.helpers import (
    ANSWERING_NOTES,
    add_broker,
    queue_event,
    save_rules,
    schedule_one_action,
)
from tests.pipeline.test_rules_flow import Flow, authority_url, certificates, flow, sim

__all__ = ["authority_url", "certificates", "flow", "sim"]

SECOND = """\
rules:
  - id: second
    trigger: noteCreated
    actions:
      - id: reply
        kind: salestrekker_note
        params:
          content: "Also seen: {{ note.content }}"
"""


def settle(flow: Flow) -> None:
    """Wait for the webhooks SalesTrekker still owes, and their processing."""

    async def nothing(_: object) -> None:
        return None

    flow.drive(nothing)
    flow.wait(flow.idle)


def note_events(flow: Flow) -> list[dict[str, Any]]:
    return flow.events_of("noteCreated")


def new_notes(flow: Flow, before: set[str]) -> list[str]:
    """The text of the notes written since ``before`` (the notes' ids)."""
    notes = flow.salestrekker.state.notes
    return sorted(note["content"] for key, note in notes.items() if key not in before)


def runs_by_rule(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["rule"]: run for run in event["runs"]}


def test_a_rule_does_not_answer_its_own_note(flow: Flow) -> None:
    save_rules(flow.engine, flow.broker_id, ANSWERING_NOTES)
    deal = flow.salestrekker.DEAL_ID
    before = set(flow.salestrekker.state.notes)

    flow.drive(lambda st: st.add_note(deal, "Client called about the rate"))
    flow.wait(lambda: len(note_events(flow)) == 2 and flow.idle())
    settle(flow)

    human, echo = sorted(note_events(flow), key=lambda e: e["received_at"])
    assert runs_by_rule(human)["answer"]["outcome"] == "fired"
    run = runs_by_rule(echo)["answer"]
    assert (run["outcome"], run["status"]) == ("echo", "no_action")
    assert run["actions"] == []
    cause = run["trace"]["echo"]
    assert cause["rule"] == "answer"
    assert cause["kind"] == "salestrekker_note"
    assert cause["event"] == human["id"]
    assert cause["rules"] == ["answer"]
    contents = new_notes(flow, before)
    assert contents == [
        "Client called about the rate",
        "Seen: Client called about the rate",
    ]


def test_two_rules_answering_each_other_stop(flow: Flow) -> None:
    save_rules(flow.engine, flow.broker_id, ANSWERING_NOTES)
    save_rules(flow.engine, flow.broker_id, SECOND)
    deal = flow.salestrekker.DEAL_ID
    before = set(flow.salestrekker.state.notes)

    flow.drive(lambda st: st.add_note(deal, "hello"))
    # The person's note, each rule's answer to it, and each rule's answer
    # to the other's answer: then every rule is in every chain.
    flow.wait(lambda: len(note_events(flow)) == 5 and flow.idle())
    settle(flow)

    assert len(note_events(flow)) == 5
    contents = new_notes(flow, before)
    assert contents == [
        "Also seen: Seen: hello",
        "Also seen: hello",
        "Seen: Also seen: hello",
        "Seen: hello",
        "hello",
    ]
    last = [
        event
        for event in note_events(flow)
        if all(run["outcome"] == "echo" for run in event["runs"])
    ]
    assert len(last) == 2
    chains = sorted(
        tuple(runs_by_rule(event)["answer"]["trace"]["echo"]["rules"]) for event in last
    )
    assert chains == [("answer", "second"), ("second", "answer")]
    # The event row keeps what caused it, for back-tests and the console.
    with transaction(flow.engine) as connection:
        stored = connection.scalars(
            select(Event.caused_by).where(Event.type == "noteCreated")
        ).all()
    assert sum(1 for value in stored if value) == 4


def test_a_rule_still_runs_on_notes_other_rules_wrote(flow: Flow) -> None:
    # `approved` (test_rules_flow's rules) writes a note when a deal is
    # approved; `answer` answers it once, and not its own answer.
    save_rules(flow.engine, flow.broker_id, ANSWERING_NOTES)
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.update_deal(deal, description="warm up"))
    flow.wait(flow.idle)

    flow.drive(lambda st: st.move_deal(deal, "6. Approved"))
    flow.wait(lambda: len(note_events(flow)) == 2 and flow.idle())
    settle(flow)

    first, second = sorted(note_events(flow), key=lambda e: e["received_at"])
    run = runs_by_rule(first)["answer"]
    assert run["outcome"] == "fired"
    assert [a["status"] for a in run["actions"]] == ["done"]
    assert runs_by_rule(second)["answer"]["outcome"] == "echo"
    assert runs_by_rule(second)["answer"]["trace"]["echo"]["rules"] == [
        "answer",
        "approved",
    ]


def test_a_back_test_sees_the_echo(flow: Flow) -> None:
    save_rules(flow.engine, flow.broker_id, ANSWERING_NOTES)
    deal = flow.salestrekker.DEAL_ID
    flow.drive(lambda st: st.add_note(deal, "Client called"))
    flow.wait(lambda: len(note_events(flow)) == 2 and flow.idle())

    with transaction(flow.engine) as connection:
        report = backtest(
            connection,
            get_broker_by_id(connection, flow.broker_id),
            load_rules(ANSWERING_NOTES).rules,
            since=utcnow() - timedelta(hours=1),
            limit=100,
            timezone="Australia/Sydney",
        )
    outcomes = sorted(
        verdict.decision.outcome
        for entry in report.entries
        for verdict in entry.verdicts
        if verdict.decision is not None
    )
    assert outcomes == ["echo", "fired"]


def trying(engine: Engine, broker_id: str, deal: str, kind: str, **params: Any) -> str:
    """A step of ``kind`` run for a new event of the deal, its try begun: its key."""
    event_id = queue_event(engine, broker_id, "dealChangesDueDate", deal, deal)
    with transaction(engine, write=True) as connection:
        key = schedule_one_action(
            connection,
            broker_id=broker_id,
            event_id=event_id,
            kind=kind,
            deal_id=deal,
            params=params,
        )
        runs.start_action(connection, key, "w")
    return key


def test_a_note_whose_action_has_not_said_what_it_made_is_matched_by_text(
    engine: Engine, settings: Settings
) -> None:
    broker = add_broker(engine, Vault(settings.fernet_keys), name="notes")
    deal = str(uuid.uuid4())
    key = trying(
        engine, broker.id, deal, "salestrekker_note", content="Valuation ordered"
    )

    def cause(content: str, note_id: str = "note-1") -> Any:
        with transaction(engine) as connection:
            return cause_of(
                connection,
                broker_id=broker.id,
                event_type="noteCreated",
                entity_id=note_id,
                data={"id": note_id, "idTicket": deal, "content": content},
            )

    # In flight: found by its text, not by another text.
    assert cause("Valuation ordered")["action"] == key
    assert cause("Valuation ordered by hand") is None
    # Once it has said what it made, only that note is its echo.
    with transaction(engine, write=True) as connection:
        runs.end_action(connection, key, status=runs.DONE, remote_id="note-1")
    assert cause("Valuation ordered")["action"] == key
    assert cause("Valuation ordered", note_id="note-2") is None
    # A note step scheduled for later has written nothing yet.
    event_id = queue_event(engine, broker.id, "dealChangesStage", deal, deal)
    with transaction(engine, write=True) as connection:
        schedule_one_action(
            connection,
            broker_id=broker.id,
            event_id=event_id,
            kind="salestrekker_note",
            deal_id=deal,
            params={"content": "Follow up"},
        )
    assert cause("Follow up", note_id="note-3") is None


def test_a_calendar_events_change_is_its_steps_by_version_replacement_or_flight(
    engine: Engine, settings: Settings
) -> None:
    broker = add_broker(engine, Vault(settings.fernet_keys), name="calendar")
    deal = str(uuid.uuid4())

    def step() -> str:
        return trying(engine, broker.id, deal, "calendar_event")

    def finish(key: str, version: str, made: str = "ev-1", **output: str) -> None:
        with transaction(engine, write=True) as connection:
            runs.end_action(
                connection,
                key,
                status=runs.DONE,
                remote_id=made,
                output={"done": "updated", "change_key": version, **output},
            )

    def cause(
        version: str,
        event_id: str = "ev-1",
        change: str = "eventUpdated",
        cancelled: bool = False,
    ) -> Any:
        data = {"id": event_id, "changeKey": version, "isCancelled": cancelled}
        with transaction(engine) as connection:
            return cause_of(
                connection,
                broker_id=broker.id,
                event_type=change,
                entity_id=event_id,
                data=data,
            )

    made = step()
    finish(made, "v1")
    assert cause("v1")["action"] == made
    assert cause("v2") is None  # a person's change
    assert cause("v1", event_id="ev-2") is None  # another event

    moving = step()
    # While the step moves it, a change it has not yet saved is its own.
    assert cause("v2")["action"] == moving
    finish(moving, "v2")
    assert cause("v2")["action"] == moving
    assert cause("v1")["action"] == made
    assert cause("v3") is None
    # A deletion is never known by the version it last had.
    assert cause("v2", change="eventDeleted") is None

    # A step that replaces the event withdraws ev-1 and makes ev-2.
    replacing = step()
    finish(replacing, "w1", made="ev-2", replaced="ev-1")
    assert cause("v3", change="eventDeleted")["action"] == replacing
    assert cause("v3", cancelled=True)["action"] == replacing
    assert cause("w1", event_id="ev-2")["action"] == replacing
    assert cause("w1", event_id="ev-2", change="eventDeleted") is None

    # A step scheduled for later has done nothing yet.
    event_id = queue_event(engine, broker.id, "dealChangesDueDate", deal, deal)
    with transaction(engine, write=True) as connection:
        schedule_one_action(
            connection,
            broker_id=broker.id,
            event_id=event_id,
            kind="calendar_event",
            deal_id=deal,
        )
    assert cause("w2", event_id="ev-2") is None
