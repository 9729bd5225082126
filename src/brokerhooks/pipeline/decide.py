"""Deciding: the broker's rules for one processed event.

Each rule triggered by the event's type is evaluated against the context
(``event``, ``deal``, ``contact``, ``note``, ``previous``, ``changes``,
``broker``, ``now``). Every evaluation is a run, stored with its trace
(the condition's value and why, each step's rendered params and timing).
Every runnable step of a fired rule becomes a ledger entry and a job, to
run now or at its time; an entry already done (a replay) is not queued
again.

Dates move: when an event changes a deal's date, the deal's steps
scheduled from that date move with it, or are cancelled when it is
cleared; a newly scheduled step replaces the same rule's and step's
earlier one for the deal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from brokerhooks.ingest.salestrekker_events import subject_of
from brokerhooks.pipeline.enrich import Fetched
from brokerhooks.rules.engine import RuleDecision, evaluate
from brokerhooks.rules.errors import InvalidRules
from brokerhooks.rules.fields import resolve
from brokerhooks.rules.model import Rule
from brokerhooks.rules.templates import timezone_of, to_datetime
from brokerhooks.store import runs
from brokerhooks.store.processing import EventToProcess

# Ledger states that a replay leaves alone.
_IN_HAND = (runs.DONE, runs.SCHEDULED, runs.RUNNING)


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's decision, or why the rule could not be evaluated."""

    rule: Rule | None
    rule_id: str
    decision: RuleDecision | None
    error: str | None = None


def rule_context(
    event: EventToProcess,
    fetched: Fetched,
    previous: Mapping[str, Any] | None,
    changes: Mapping[str, Any],
    broker: Mapping[str, Any],
    now: datetime,
    caused_by: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a rule sees for ``event``.

    ``caused_by`` is the action that made the event's item, for an echo
    (``pipeline.echoes``).
    """
    snapshots: dict[str, Any] = {"deal": None, "contact": None, "note": None}
    for subject, _entity_id, data in fetched.all():
        snapshots[subject] = data
    return {
        "event": {
            "id": event.id,
            "type": event.type,
            "source": "salestrekker",
            "entity_id": event.entity_id,
            "deal_id": event.deal_id,
            "received_at": event.received_at,
            "payload": json.loads(event.payload),
            "caused_by": dict(caused_by) if caused_by is not None else None,
        },
        **snapshots,
        "previous": previous,
        "changes": dict(changes),
        "broker": dict(broker),
        "now": now,
    }


def decide(rules: list[Rule], context: Mapping[str, Any]) -> list[Verdict]:
    verdicts = []
    for rule in rules:
        try:
            verdicts.append(Verdict(rule, rule.id, evaluate(rule, context)))
        except (ValueError, InvalidRules) as error:
            verdicts.append(Verdict(rule, rule.id, None, str(error)))
    return verdicts


def record(
    connection: Connection,
    event: EventToProcess,
    verdicts: list[Verdict],
    context: Mapping[str, Any],
) -> list[int]:
    """Store the runs, queue their actions, move dated steps; return run ids."""
    if event.deal_id is not None and subject_of(event.type) == "deal":
        _follow_dates(connection, event, context)
    return [_record_one(connection, event, verdict) for verdict in verdicts]


def _record_one(connection: Connection, event: EventToProcess, verdict: Verdict) -> int:
    decision = verdict.decision
    if decision is None:
        return runs.insert_run(
            connection,
            broker_id=event.broker_id,
            event_id=event.id,
            rule_id=verdict.rule_id,
            outcome="rule_failed",
            status=runs.FAILED,
            trace={"rule": verdict.rule_id, "error": verdict.error},
        )

    trace = decision.as_trace()
    to_queue = []
    if decision.fired:
        for position, step in enumerate(decision.steps):
            if not step.runnable:
                continue
            key = runs.action_key(event.id, decision.rule_id, step.step_id)
            existing = runs.find_action(connection, key)
            if existing is not None and existing.status in _IN_HAND:
                # A replay: the ledger already holds this step.
                trace["steps"][position]["ledger"] = f"already {existing.status}"
                continue
            to_queue.append((position, step, key))
    failed = decision.fired and any(step.error for step in decision.steps)
    if to_queue:
        status = runs.PENDING
    elif failed:
        status = runs.FAILED
    elif decision.fired:
        status = runs.SUCCEEDED
    else:
        status = runs.NO_ACTION
    run_id = runs.insert_run(
        connection,
        broker_id=event.broker_id,
        event_id=event.id,
        rule_id=decision.rule_id,
        outcome=decision.outcome,
        status=status,
        trace=trace,
    )
    assert verdict.rule is not None
    steps = {step.id: step for step in verdict.rule.actions}
    for position, step, key in to_queue:
        rule_step = steps[step.step_id]
        schedule = None
        if rule_step.schedule is not None:
            schedule = {
                "field": rule_step.schedule.field,
                "shift_seconds": rule_step.schedule.shift.total_seconds(),
            }
            if event.deal_id is not None:
                for older in runs.superseded(
                    connection,
                    broker_id=event.broker_id,
                    deal_id=event.deal_id,
                    rule_id=decision.rule_id,
                    step_id=step.step_id,
                ):
                    runs.cancel_action(
                        connection, older, f"replaced by the step of event {event.id}"
                    )
        runs.schedule_action(
            connection,
            key=key,
            run_id=run_id,
            broker_id=event.broker_id,
            event_id=event.id,
            deal_id=event.deal_id,
            rule_id=decision.rule_id,
            step_id=step.step_id,
            position=position,
            kind=step.kind,
            connection_name=step.connection,
            run_at=step.timing.at or runs.later(0),
            schedule=schedule,
            params=_jsonable(dict(step.params or {})),
        )
    if status != runs.PENDING:
        runs.prune_runs(
            connection,
            event.broker_id,
            decision.rule_id,
            status,
            runs.RUNS_KEPT_PER_STATUS,
        )
    return run_id


def _follow_dates(
    connection: Connection, event: EventToProcess, context: Mapping[str, Any]
) -> None:
    """Move or cancel the deal's steps scheduled from a date that changed."""
    assert event.deal_id is not None
    zone = timezone_of(context)
    for entry in runs.scheduled_for_deal(connection, event.broker_id, event.deal_id):
        assert entry.schedule is not None
        path = tuple(str(entry.schedule["field"]).split("."))
        resolved = resolve(path, context)
        value = None if resolved.missing is not None else resolved.value
        try:
            moment = to_datetime(value, zone)
        except ValueError:
            moment = None
        if moment is None:
            runs.cancel_action(
                connection,
                entry.key,
                f"{entry.schedule['field']} was cleared by event {event.id}",
            )
            continue
        run_at = moment + timedelta(seconds=float(entry.schedule["shift_seconds"]))
        if run_at != entry.run_at:
            runs.move_action(connection, entry.key, max(run_at, runs.later(0)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value
