"""Queries on runs and on the idempotency ledger of their actions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, delete, func, insert, select, update

from brokerhooks.store import queue
from brokerhooks.store.models import QUEUED, ActionRecord, Job, Run
from brokerhooks.store.types import utcnow

RUN_ACTION = "run_action"
# Runs kept per rule and status: failures are not pushed out by successes.
RUNS_KEPT_PER_STATUS = 200

# Run statuses.
NO_ACTION = "no_action"
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"

# Action statuses. `waiting` is parked until a person acts (reconnect).
SCHEDULED = "scheduled"
RUNNING = "running"
DONE = "done"
ACTION_FAILED = "failed"
WAITING = "waiting"
CANCELLED = "cancelled"
TERMINAL_ACTIONS = (DONE, ACTION_FAILED, CANCELLED)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    key: str
    run_id: int
    broker_id: str
    event_id: str
    deal_id: str | None
    rule_id: str
    step_id: str
    position: int
    kind: str
    connection: str | None
    status: str
    run_at: datetime
    schedule: dict[str, Any] | None
    params: dict[str, Any]
    remote_id: str | None
    output: dict[str, Any] | None
    attempts: list[dict[str, Any]]
    error: str | None


def _entry(row: Any) -> LedgerEntry:
    values = dict(row._mapping)
    for name in ("schedule", "output"):
        values[name] = json.loads(values[name]) if values[name] else None
    values["params"] = json.loads(values["params"])
    values["attempts"] = json.loads(values["attempts"])
    del values["created_at"], values["updated_at"]
    return LedgerEntry(**values)


def action_key(event_id: str, rule_id: str, step_id: str) -> str:
    return f"{event_id}:{rule_id}:{step_id}"


def insert_run(
    connection: Connection,
    *,
    broker_id: str,
    event_id: str,
    rule_id: str,
    outcome: str,
    status: str,
    trace: dict[str, Any],
) -> int:
    now = utcnow()
    result = connection.execute(
        insert(Run).values(
            broker_id=broker_id,
            event_id=event_id,
            rule_id=rule_id,
            outcome=outcome,
            status=status,
            trace=json.dumps(trace, default=str),
            created_at=now,
            finished_at=None if status == PENDING else now,
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def find_action(connection: Connection, key: str) -> LedgerEntry | None:
    row = connection.execute(
        select(ActionRecord.__table__).where(ActionRecord.key == key)
    ).one_or_none()
    return _entry(row) if row is not None else None


def find_made(
    connection: Connection, broker_id: str, remote_id: str, kinds: tuple[str, ...]
) -> LedgerEntry | None:
    """The broker's action of one of ``kinds`` that made ``remote_id``."""
    row = connection.execute(
        _acting_on(broker_id, remote_id, kinds).order_by(ActionRecord.created_at)
    ).first()
    return _entry(row) if row is not None else None


def acted_on(
    connection: Connection, broker_id: str, remote_id: str, kinds: tuple[str, ...]
) -> list[LedgerEntry]:
    """The broker's actions of ``kinds`` that made or changed ``remote_id``.

    Newest first: an action that keeps a deal's item in step (a calendar
    event moved with its deal's date) names the item it changed.
    """
    rows = connection.execute(
        _acting_on(broker_id, remote_id, kinds).order_by(ActionRecord.created_at.desc())
    ).all()
    return [_entry(row) for row in rows]


def _acting_on(broker_id: str, remote_id: str, kinds: tuple[str, ...]) -> Select[Any]:
    return select(ActionRecord.__table__).where(
        ActionRecord.broker_id == broker_id,
        ActionRecord.remote_id == remote_id,
        ActionRecord.kind.in_(kinds),
    )


def of_step(
    connection: Connection, broker_id: str, deal_id: str, rule_id: str, step_id: str
) -> list[LedgerEntry]:
    """The actions one rule's step took for one deal, newest first."""
    rows = connection.execute(
        select(ActionRecord.__table__)
        .where(
            ActionRecord.broker_id == broker_id,
            ActionRecord.deal_id == deal_id,
            ActionRecord.rule_id == rule_id,
            ActionRecord.step_id == step_id,
        )
        .order_by(ActionRecord.created_at.desc())
    ).all()
    return [_entry(row) for row in rows]


def unrecorded(
    connection: Connection, broker_id: str, deal_id: str, kind: str
) -> list[LedgerEntry]:
    """The deal's actions of ``kind`` that may have acted without saying what.

    Those ``in_flight``, newest first.
    """
    rows = connection.execute(
        select(ActionRecord.__table__)
        .where(
            ActionRecord.broker_id == broker_id,
            ActionRecord.deal_id == deal_id,
            ActionRecord.kind == kind,
            ActionRecord.status.in_((SCHEDULED, RUNNING)),
            ActionRecord.remote_id.is_(None),
        )
        .order_by(ActionRecord.created_at.desc())
    ).all()
    return [entry for entry in map(_entry, rows) if in_flight(entry)]


def in_flight(entry: LedgerEntry) -> bool:
    """Whether the action may have acted without saying what it did.

    Nothing remembered as made, and running, or waiting to be retried after
    a try whose answer was lost: an action scheduled for later that has not
    tried yet has done nothing.
    """
    if entry.remote_id is not None:
        return False
    return entry.status == RUNNING or (
        entry.status == SCHEDULED and bool(entry.attempts)
    )


def schedule_action(
    connection: Connection,
    *,
    key: str,
    run_id: int,
    broker_id: str,
    event_id: str,
    deal_id: str | None,
    rule_id: str,
    step_id: str,
    position: int,
    kind: str,
    connection_name: str | None,
    run_at: datetime,
    schedule: dict[str, Any] | None,
    params: dict[str, Any],
) -> None:
    """Write (or re-arm, on replay) a ledger entry and queue its job."""
    now = utcnow()
    values = {
        "run_id": run_id,
        "broker_id": broker_id,
        "event_id": event_id,
        "deal_id": deal_id,
        "rule_id": rule_id,
        "step_id": step_id,
        "position": position,
        "kind": kind,
        "connection": connection_name,
        "status": SCHEDULED,
        "run_at": run_at,
        "schedule": json.dumps(schedule) if schedule else None,
        "params": json.dumps(params, default=str),
        "error": None,
        "updated_at": now,
    }
    updated = connection.execute(
        update(ActionRecord).where(ActionRecord.key == key).values(**values)
    )
    if not updated.rowcount:
        connection.execute(
            insert(ActionRecord).values(
                key=key, attempts="[]", created_at=now, **values
            )
        )
    queue.enqueue(
        connection,
        kind=RUN_ACTION,
        broker_id=broker_id,
        event_id=event_id,
        ref=key,
        ordering_key=f"{event_id}:{rule_id}",
        run_after=run_at,
    )


def start_action(connection: Connection, key: str, worker: str) -> LedgerEntry:
    """Mark an entry running with a new attempt; return it as it was before."""
    entry = find_action(connection, key)
    assert entry is not None
    attempts = [
        *entry.attempts,
        {"number": len(entry.attempts) + 1, "worker": worker, "started_at": _now()},
    ]
    connection.execute(
        update(ActionRecord)
        .where(ActionRecord.key == key)
        .values(status=RUNNING, attempts=json.dumps(attempts), updated_at=utcnow())
    )
    return entry


def remember_remote_id(connection: Connection, key: str, remote_id: str | None) -> None:
    """Keep what a running action made so far, for its next try to find."""
    connection.execute(
        update(ActionRecord)
        .where(ActionRecord.key == key)
        .values(remote_id=remote_id, updated_at=utcnow())
    )


def end_action(
    connection: Connection,
    key: str,
    *,
    status: str,
    remote_id: str | None = None,
    output: dict[str, Any] | None = None,
    error: str | None = None,
    run_at: datetime | None = None,
) -> None:
    """Record how the last attempt ended; update the run when it is over."""
    entry = find_action(connection, key)
    assert entry is not None
    attempts = list(entry.attempts)
    if attempts and "finished_at" not in attempts[-1]:
        attempts[-1] = {
            **attempts[-1],
            "finished_at": _now(),
            "outcome": "retry" if status == SCHEDULED else status,
            "error": error,
        }
    values: dict[str, Any] = {
        "status": status,
        "error": error,
        "attempts": json.dumps(attempts),
        "updated_at": utcnow(),
    }
    if status == DONE:
        values.update(remote_id=remote_id, output=json.dumps(output or {}, default=str))
    if run_at is not None:
        values["run_at"] = run_at
    connection.execute(
        update(ActionRecord).where(ActionRecord.key == key).values(**values)
    )
    settle_run(connection, entry.run_id)


def settle_run(connection: Connection, run_id: int) -> None:
    """A run is over when all its actions are: succeeded, or failed if any did."""
    statuses = list(
        connection.scalars(
            select(ActionRecord.status).where(ActionRecord.run_id == run_id)
        )
    )
    if not statuses or any(status not in TERMINAL_ACTIONS for status in statuses):
        return
    status = FAILED if ACTION_FAILED in statuses else SUCCEEDED
    run = connection.execute(
        select(Run.broker_id, Run.rule_id).where(Run.id == run_id)
    ).one_or_none()
    connection.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == PENDING)
        .values(status=status, finished_at=utcnow())
    )
    if run is not None:
        prune_runs(connection, run.broker_id, run.rule_id, status, RUNS_KEPT_PER_STATUS)


def prior_done(connection: Connection, entry: LedgerEntry) -> LedgerEntry | None:
    """The same rule and step's last done action for the same deal."""
    if entry.deal_id is None:
        return None
    row = connection.execute(
        select(ActionRecord.__table__)
        .where(
            ActionRecord.broker_id == entry.broker_id,
            ActionRecord.deal_id == entry.deal_id,
            ActionRecord.rule_id == entry.rule_id,
            ActionRecord.step_id == entry.step_id,
            ActionRecord.status == DONE,
            ActionRecord.key != entry.key,
        )
        .order_by(ActionRecord.updated_at.desc())
        .limit(1)
    ).one_or_none()
    return _entry(row) if row is not None else None


def scheduled_for_deal(
    connection: Connection, broker_id: str, deal_id: str
) -> list[LedgerEntry]:
    """Entries of a deal still waiting for a time taken from its data."""
    rows = connection.execute(
        select(ActionRecord.__table__).where(
            ActionRecord.broker_id == broker_id,
            ActionRecord.deal_id == deal_id,
            ActionRecord.status == SCHEDULED,
            ActionRecord.schedule.is_not(None),
        )
    ).all()
    return [_entry(row) for row in rows]


def move_action(connection: Connection, key: str, run_at: datetime) -> None:
    connection.execute(
        update(ActionRecord)
        .where(ActionRecord.key == key)
        .values(run_at=run_at, updated_at=utcnow())
    )
    connection.execute(
        update(Job).where(Job.ref == key, Job.status == QUEUED).values(run_after=run_at)
    )


def cancel_action(connection: Connection, key: str, reason: str) -> None:
    entry = find_action(connection, key)
    connection.execute(delete(Job).where(Job.ref == key, Job.status == QUEUED))
    connection.execute(
        update(ActionRecord)
        .where(ActionRecord.key == key)
        .values(status=CANCELLED, error=reason, updated_at=utcnow())
    )
    if entry is not None:
        settle_run(connection, entry.run_id)


def superseded(
    connection: Connection, *, broker_id: str, deal_id: str, rule_id: str, step_id: str
) -> list[str]:
    """Keys of scheduled entries of the same rule, step and deal."""
    return list(
        connection.scalars(
            select(ActionRecord.key).where(
                ActionRecord.broker_id == broker_id,
                ActionRecord.deal_id == deal_id,
                ActionRecord.rule_id == rule_id,
                ActionRecord.step_id == step_id,
                ActionRecord.status == SCHEDULED,
                ActionRecord.schedule.is_not(None),
            )
        )
    )


def waiting_for_connection(
    connection: Connection, broker_id: str, connection_name: str
) -> list[str]:
    return list(
        connection.scalars(
            select(ActionRecord.key).where(
                ActionRecord.broker_id == broker_id,
                ActionRecord.connection == connection_name,
                ActionRecord.status == WAITING,
            )
        )
    )


def requeue(connection: Connection, key: str) -> None:
    """Queue a parked or failed entry again (reconnect, replay)."""
    entry = find_action(connection, key)
    assert entry is not None
    connection.execute(
        update(ActionRecord)
        .where(ActionRecord.key == key)
        .values(status=SCHEDULED, error=None, updated_at=utcnow())
    )
    connection.execute(
        update(Run)
        .where(Run.id == entry.run_id)
        .values(status=PENDING, finished_at=None)
    )
    queue.enqueue(
        connection,
        kind=RUN_ACTION,
        broker_id=entry.broker_id,
        event_id=entry.event_id,
        ref=key,
        ordering_key=f"{entry.event_id}:{entry.rule_id}",
    )


def prune_runs(
    connection: Connection, broker_id: str, rule_id: str, status: str, keep: int
) -> None:
    """Keep the newest ``keep`` runs of a rule with this status.

    Runs whose actions are still pending are never pruned; a pruned run's
    ledger entries stay (they are what makes replays safe).
    """
    if status == PENDING:
        return
    cutoff = connection.scalar(
        select(Run.id)
        .where(Run.broker_id == broker_id, Run.rule_id == rule_id, Run.status == status)
        .order_by(Run.id.desc())
        .offset(keep)
        .limit(1)
    )
    if cutoff is not None:
        connection.execute(
            delete(Run).where(
                Run.broker_id == broker_id,
                Run.rule_id == rule_id,
                Run.status == status,
                Run.id <= cutoff,
            )
        )


def runs_of_event(connection: Connection, event_id: str) -> list[dict[str, Any]]:
    rows = connection.execute(
        select(Run.id, Run.rule_id, Run.outcome, Run.status, Run.trace, Run.created_at)
        .where(Run.event_id == event_id)
        .order_by(Run.id)
    ).all()
    runs = []
    for row in rows:
        actions = connection.execute(
            select(ActionRecord.__table__)
            .where(ActionRecord.run_id == row.id)
            .order_by(ActionRecord.position)
        ).all()
        runs.append(
            {
                "id": row.id,
                "rule": row.rule_id,
                "outcome": row.outcome,
                "status": row.status,
                "created_at": row.created_at.isoformat(),
                "trace": json.loads(row.trace),
                "actions": [_public(_entry(action)) for action in actions],
            }
        )
    return runs


def _public(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "step": entry.step_id,
        "kind": entry.kind,
        "status": entry.status,
        "run_at": entry.run_at.isoformat(),
        "params": entry.params,
        "remote_id": entry.remote_id,
        "output": entry.output,
        "attempts": entry.attempts,
        "error": entry.error,
    }


def count_runs(connection: Connection, broker_id: str, rule_id: str) -> int:
    return (
        connection.scalar(
            select(func.count())
            .select_from(Run)
            .where(Run.broker_id == broker_id, Run.rule_id == rule_id)
        )
        or 0
    )


def _now() -> str:
    return utcnow().isoformat()


def later(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
