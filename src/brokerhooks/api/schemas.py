"""The JSON API's response bodies, as pydantic models.

The OpenAPI description is generated from these, so what the description
says is what the API sends. Values that are the CRM's own data (payloads,
snapshots, rendered params) stay free-form objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from brokerhooks.rules.errors import RuleError


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


# ---------------------------------------------------------------- errors


class RuleProblem(_Body):
    """One problem in a rule file: where it is, what is wrong, the fix."""

    rule: str | None = Field(description="The rule's id, when known.")
    step: str | None = Field(description="The step's id, when the problem is in one.")
    field: str = Field(description="Where in the rule: `condition`, `params.title`.")
    problem: str
    fix: str
    line: int | None = Field(description="The line in the YAML sent, when known.")

    @classmethod
    def of(cls, error: RuleError) -> RuleProblem:
        return cls(
            rule=error.rule,
            step=error.step,
            field=error.step_field,
            problem=error.problem,
            fix=error.fix,
            line=error.line,
        )


class ErrorBody(_Body):
    """The body of every error answer."""

    error: str = Field(description="A stable code, e.g. `not_found`.")
    detail: str = Field(description="What went wrong and what to do about it.")
    errors: list[RuleProblem] | None = Field(
        default=None, description="With `invalid_rules`: every problem found."
    )


# ---------------------------------------------------------------- traces


class ConditionPartTrace(_Body):
    text: str
    value: Any = None
    error: str | None = None
    reads: dict[str, str] = Field(
        default_factory=dict, description="Each field read, with its value shown."
    )


class ConditionTrace(_Body):
    source: str | None = Field(
        description="The condition; null when the rule has none."
    )
    value: Any = None
    error: str | None = None
    operator: str | None = None
    reads: dict[str, str] = Field(default_factory=dict)
    parts: list[ConditionPartTrace] = Field(default_factory=list)


class StepTiming(_Body):
    when: str = Field(description="`now`, `later` or `skip`.")
    at: datetime | None = None
    reason: str = ""


class StepTrace(_Body):
    id: str
    kind: str
    connection: str | None = None
    params: dict[str, Any] | None = Field(
        default=None, description="The rendered params; null when a template failed."
    )
    error: str | None = None
    timing: StepTiming
    ledger: str | None = Field(
        default=None, description="Set when a replay found the step already in hand."
    )


class Trace(_Body):
    """What one rule decided for one event, and why."""

    rule: str
    event_type: str | None = None
    outcome: str | None = Field(
        default=None,
        description="`fired`, `condition_false`, `condition_failed`, "
        "`not_triggered`, `disabled` or `echo` (the event was caused by "
        "this rule's own work); absent when the rule could not run.",
    )
    echo: dict[str, Any] | None = Field(
        default=None,
        description="For an echo: the action that made the event's item "
        "(`rule`, `step`, `kind`, `action`, `event`) and the chain of `rules`.",
    )
    condition: ConditionTrace | None = None
    steps: list[StepTrace] = Field(default_factory=list)
    error: str | None = Field(
        default=None, description="Why the rule could not be evaluated."
    )


# ---------------------------------------------------------------- runs


class ActionAttempt(_Body):
    model_config = ConfigDict(extra="allow")

    number: int
    worker: str
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str | None = None
    error: str | None = None


class ActionInfo(_Body):
    """One step of a run as the ledger records it."""

    key: str = Field(description="The idempotency key: event, rule, step.")
    step: str
    kind: str
    status: str = Field(
        description="`scheduled`, `running`, `done`, `failed`, `waiting`, `cancelled`."
    )
    run_at: datetime
    params: dict[str, Any]
    remote_id: str | None
    output: dict[str, Any] | None
    attempts: list[ActionAttempt]
    error: str | None


class RunSummary(_Body):
    id: int
    event_id: str
    rule: str
    outcome: str
    status: str = Field(description="`no_action`, `pending`, `succeeded` or `failed`.")
    created_at: datetime
    finished_at: datetime | None


class RunDetail(RunSummary):
    trace: Trace
    actions: list[ActionInfo]


class RunPage(_Body):
    items: list[RunSummary]
    next: int | None = Field(
        description="Pass as `before` for the next page; null on the last page."
    )


class EventRun(_Body):
    """A run as part of its event's details."""

    id: int
    rule: str
    outcome: str
    status: str
    created_at: datetime
    trace: Trace
    actions: list[ActionInfo]


# ---------------------------------------------------------------- events


class EventSummary(_Body):
    id: str
    broker: str = Field(description="The broker's name.")
    source: str
    type: str
    entity_id: str
    deal_id: str | None
    status: str
    received_at: datetime
    payload: dict[str, Any] = Field(description="The webhook's JSON body as sent.")
    delivery_id: str


class EventPage(_Body):
    items: list[EventSummary]
    next: str | None = Field(
        description="Pass as `before` for the next page; null on the last page."
    )


class DeliveryInfo(_Body):
    id: str
    received_at: datetime
    client_address: str | None
    body_size: int
    body_sha256: str | None


class ProcessingAttempt(_Body):
    number: int
    worker: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    error: str | None


class Change(_Body):
    from_: Any = Field(alias="from")
    to: Any


class EventDetail(EventSummary):
    status_reason: str | None
    coalesced_into: str | None
    processed_at: datetime | None
    delivery: DeliveryInfo
    attempts: list[ProcessingAttempt]
    snapshot: dict[str, Any] | None = Field(
        description="The subject as fetched from the CRM for this event."
    )
    previous: dict[str, Any] | None = Field(
        description="The subject's snapshot before this event."
    )
    changes: dict[str, Change] | None
    caused_by: dict[str, Any] | None = Field(
        default=None,
        description="For an event whose item one of brokerhooks' own actions "
        "made (an echo): that action (`rule`, `step`, `kind`, `action`, `event`) "
        "and the chain of `rules` that led to it.",
    )
    runs: list[EventRun]


# ---------------------------------------------------------------- rules


class RuleInfo(_Body):
    id: str
    name: str | None = Field(description="The rule's title; null when it has none.")
    enabled: bool
    updated_at: datetime
    source: str = Field(description="The rule's YAML.")


class RuleList(_Body):
    items: list[RuleInfo]


class ValidationReport(_Body):
    valid: bool
    errors: list[RuleProblem]


class BacktestEvent(_Body):
    event: str = Field(description="The event's id.")
    type: str
    received_at: datetime
    runs: list[Trace]


class BacktestReport(_Body):
    """What a rule file would have done with stored events; nothing was done."""

    since: datetime
    evaluated: int = Field(description="How many processed events were evaluated.")
    fired: int = Field(description="How many times a rule fired.")
    events: list[BacktestEvent] = Field(
        description="The events any rule of the file was triggered by, oldest first."
    )
