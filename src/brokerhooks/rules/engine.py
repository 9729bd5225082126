"""What a rule does for one event: the pure core of a run.

``evaluate(rule, context)`` takes a rule and the variables of one event
(``brokerhooks.rules.fields`` describes them) and returns a
``RuleDecision``: whether the trigger matched, the condition's value and
explanation, and for each step its rendered params (or the error that
stopped them) and when it should run. It reads no database and calls no
service, so the worker acts on its decision and the back-test prints it.
It does not raise for anything a rule or the data can get wrong: those are
recorded in the decision.

When a step runs:

- no ``delay`` or ``schedule``: now;
- ``delay: 2h``: two hours after the event was received (now, if that has
  passed);
- ``schedule: {before: deal.dueDate, offset: 2d}``: two days before the
  date the field holds; a time already passed means now, and an empty
  field means the step is skipped, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from brokerhooks.ingest.salestrekker_events import canonical_event_name
from brokerhooks.rules.conditions import (
    ConditionResult,
    compile_condition,
    evaluate_condition,
    show,
)
from brokerhooks.rules.errors import ConditionSyntaxError, TemplateError
from brokerhooks.rules.fields import resolve
from brokerhooks.rules.model import Params, Rule, StepBase, TextKind, format_duration
from brokerhooks.rules.templates import render, timezone_of, to_datetime

Outcome = Literal[
    "fired",
    "disabled",
    "not_triggered",
    "echo",
    "condition_false",
    "condition_failed",
]
When = Literal["now", "later", "skip"]


@dataclass(frozen=True, slots=True)
class Timing:
    """When a step should run: ``now``, ``later`` (at ``at``) or ``skip``."""

    when: When
    at: datetime | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StepDecision:
    """One step of a fired rule: its rendered params and its timing.

    ``params`` is None and ``error`` says why when a template failed.
    Rendered params keep the kind's names (``list``, ``to``, ...); dates
    become aware datetimes, addresses a list of strings.
    """

    step_id: str
    kind: str
    connection: str | None
    timing: Timing
    params: Mapping[str, Any] | None = None
    error: str | None = None

    @property
    def runnable(self) -> bool:
        return self.error is None and self.timing.when != "skip"


@dataclass(frozen=True, slots=True)
class RuleDecision:
    """What one rule decided for one event."""

    rule_id: str
    event_type: str
    outcome: Outcome
    condition: ConditionResult | None = None
    steps: tuple[StepDecision, ...] = field(default=())
    # For an echo: the action that made the event's item, and its chain.
    echo: Mapping[str, Any] | None = None

    @property
    def fired(self) -> bool:
        return self.outcome == "fired"

    def as_trace(self) -> dict[str, Any]:
        """The decision as JSON-ready data, for a run's stored trace."""
        return {
            "rule": self.rule_id,
            "event_type": self.event_type,
            "outcome": self.outcome,
            "condition": _condition_trace(self.condition),
            "steps": [_step_trace(step) for step in self.steps],
            **({"echo": _jsonable(dict(self.echo))} if self.echo else {}),
        }


def evaluate(
    rule: Rule, context: Mapping[str, Any], *, ignore_disabled: bool = False
) -> RuleDecision:
    """Decide what ``rule`` does for the event in ``context``.

    ``ignore_disabled`` evaluates a disabled rule as if it were enabled,
    for a back-test. ``context["now"]`` must be an aware datetime.
    """
    event = context.get("event")
    raw_type = str(event.get("type", "")) if isinstance(event, Mapping) else ""
    event_type = canonical_event_name(raw_type) or raw_type
    if not rule.enabled and not ignore_disabled:
        return RuleDecision(rule.id, event_type, "disabled")
    if event_type not in rule.trigger:
        return RuleDecision(rule.id, event_type, "not_triggered")
    caused_by = event.get("caused_by") if isinstance(event, Mapping) else None
    if isinstance(caused_by, Mapping) and rule.id in (caused_by.get("rules") or ()):
        # The event comes from this rule's own work: running would feed itself.
        return RuleDecision(rule.id, event_type, "echo", echo=caused_by)

    condition = _condition(rule, context)
    if condition.error is not None:
        return RuleDecision(rule.id, event_type, "condition_failed", condition)
    if not condition.passed:
        return RuleDecision(rule.id, event_type, "condition_false", condition)

    steps = tuple(decide_step(step, context) for step in rule.actions)
    return RuleDecision(rule.id, event_type, "fired", condition, steps)


def _condition(rule: Rule, context: Mapping[str, Any]) -> ConditionResult:
    if rule.condition is None:
        return evaluate_condition(None, context)
    try:
        compiled = compile_condition(rule.condition)
    except ConditionSyntaxError as error:
        return ConditionResult(rule.condition, None, f"does not parse: {error}")
    return evaluate_condition(compiled, context)


def decide_step(step: StepBase, context: Mapping[str, Any]) -> StepDecision:
    """Render one step's params and work out when it runs."""
    timing = step_timing(step, context)
    try:
        params = render_params(step, context)
    except TemplateError as error:
        return StepDecision(
            step.id, step.kind, step.connection, timing, error=str(error)
        )
    return StepDecision(step.id, step.kind, step.connection, timing, params)


# ---------------------------------------------------------------- params


def render_params(step: StepBase, context: Mapping[str, Any]) -> dict[str, Any]:
    """The step's params with every template rendered and checked.

    Raises ``TemplateError`` naming the param (``params.title``) when a
    template fails or renders something its kind cannot use.
    """
    values = step.params.model_dump(by_alias=True)
    return {
        key: _render_param(step.params, key, value, context)
        for key, value in values.items()
    }


def render_param(params: Params, key: str, context: Mapping[str, Any]) -> Any:
    """One param (by its name in the rule file), rendered and checked."""
    value = params.model_dump(by_alias=True)[key]
    return _render_param(params, key, value, context)


def _render_param(
    params: Params, key: str, value: Any, context: Mapping[str, Any]
) -> Any:
    kind = params.texts.get(key)
    if kind is None or value is None:
        return value
    name = f"params.{key}"
    try:
        zone = timezone_of(context)
    except ValueError as error:
        raise TemplateError(name, str(error)) from None
    html = getattr(params, "html", False) is True and key == "body"
    text = _render_value(value, context, name, html=html)
    return _convert(kind, text, name, zone, required=key in params.required)


def _render_value(
    value: Any, context: Mapping[str, Any], name: str, *, html: bool
) -> Any:
    if isinstance(value, str):
        return render(value, context, name=name, html=html)
    if isinstance(value, list):
        return [
            _render_value(item, context, f"{name}[{index}]", html=html)
            for index, item in enumerate(value)
        ]
    if isinstance(value, dict):
        return {
            key: _render_value(item, context, f"{name}.{key}", html=html)
            for key, item in value.items()
        }
    return value


_ADDRESS: Final = re.compile(r"[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+")


def _convert(
    kind: TextKind, value: Any, name: str, zone: tzinfo, *, required: bool
) -> Any:
    """Check what a template rendered against what its param must be."""
    if kind is TextKind.ADDRESSES:
        return _addresses(value, name, required=required)
    if not isinstance(value, str):
        return value  # a JSON body or header map, rendered leaf by leaf
    text = value.strip()
    if not text:
        if required:
            raise TemplateError(
                name,
                "rendered to empty text",
                fix="check that the fields it uses have values on this event",
            )
        return None if kind is not TextKind.TEXT else value
    if kind is TextKind.DATETIME:
        return _datetime(text, name, zone)
    if kind is TextKind.URL:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise TemplateError(
                name, f"rendered {text!r}, not an http or https URL", fix=_URL_FIX
            )
        return text
    if kind is TextKind.PATH:
        return _path(text, name)
    return value


_URL_FIX: Final = "write a full URL, e.g. https://example.com/hook"


def _datetime(text: str, name: str, zone: tzinfo) -> datetime:
    try:
        moment = to_datetime(text, zone)
    except ValueError:
        moment = None
    if moment is None:
        raise TemplateError(
            name,
            f"rendered {text!r}, not a date or time",
            fix="render ISO 8601 (2025-04-09 or 2025-04-09T09:00) or epoch "
            "milliseconds, e.g. {{ deal.dueDate | date_add(days=-2) }}",
        )
    return moment


def _addresses(value: Any, name: str, *, required: bool) -> list[str] | None:
    items = value if isinstance(value, list) else [value]
    found = [
        part.strip()
        for item in items
        for part in re.split(r"[,;]", str(item or ""))
        if part.strip()
    ]
    for address in found:
        if not _ADDRESS.fullmatch(address):
            raise TemplateError(
                name,
                f"{address!r} is not an e-mail address",
                fix="separate addresses with commas, e.g. a@example.com, b@example.com",
            )
    if not found and required:
        raise TemplateError(
            name,
            "rendered to no e-mail address",
            fix="check that the contact has an e-mail address, or add a condition",
        )
    return found or None


def _path(text: str, name: str) -> str:
    parts = text.replace("\\", "/").split("/")
    if text.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", text) or ".." in parts:
        raise TemplateError(
            name,
            f"rendered {text!r}, which leaves the folder it belongs in",
            fix="write a relative path without .., e.g. Deals/{{ deal.name }}",
        )
    return text


# ---------------------------------------------------------------- timing


def step_timing(step: StepBase, context: Mapping[str, Any]) -> Timing:
    """When ``step`` runs for the event in ``context``."""
    now = _now(context)
    if step.delay is not None:
        return _delayed(step.delay, context, now)
    if step.schedule is None:
        return Timing("now")

    schedule = step.schedule
    resolved = resolve(schedule.path, context)
    if resolved.missing is not None or resolved.value is None:
        return Timing(
            "skip", reason=f"{schedule.field} is empty, so the step has no time"
        )
    try:
        moment = to_datetime(resolved.value, timezone_of(context))
    except ValueError as error:
        return Timing("skip", reason=f"{schedule.field}: {error}")
    if moment is None:
        return Timing(
            "skip", reason=f"{schedule.field} is empty, so the step has no time"
        )

    at = moment + schedule.shift
    offset = format_duration(schedule.offset)
    side = "before" if schedule.before is not None else "after"
    rule = f"{offset} {side} {schedule.field}" if schedule.offset else schedule.field
    if at <= now:
        return Timing("now", reason=f"{rule} ({_when(at)}) has passed")
    return Timing("later", at, rule)


def _delayed(delay: timedelta, context: Mapping[str, Any], now: datetime) -> Timing:
    event = context.get("event")
    received = event.get("received_at") if isinstance(event, Mapping) else None
    start = received if isinstance(received, datetime) else now
    at = start + delay
    rule = f"{format_duration(delay)} after the event"
    if at <= now:
        return Timing("now", reason=f"{rule} ({_when(at)}) has passed")
    return Timing("later", at, rule)


def _now(context: Mapping[str, Any]) -> datetime:
    now = context.get("now")
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError("the context's 'now' must be an aware datetime")
    return now


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M %z")


# ---------------------------------------------------------------- text


def describe(decision: RuleDecision) -> str:
    """A short text block saying what the rule decided and why."""
    outcome = decision.outcome.replace("_", " ")
    lines = [f"rule {decision.rule_id} on {decision.event_type}: {outcome}"]
    if decision.echo is not None:
        lines.append(f"  {echo_reason(decision.rule_id, decision.echo)}")
    if decision.condition is not None:
        lines.extend(f"  {line}" for line in decision.condition.explain())
    for step in decision.steps:
        lines.extend(_describe_step(step))
    return "\n".join(lines)


def echo_reason(rule_id: str, caused_by: Mapping[str, Any]) -> str:
    """Why ``rule_id`` did not run on an event its own work caused."""
    text = (
        f"not run: this event was caused by step {caused_by.get('step')} of "
        f"rule {caused_by.get('rule')} for event {caused_by.get('event')}"
    )
    chain = [str(rule) for rule in caused_by.get("rules") or ()]
    if rule_id != caused_by.get("rule") and rule_id in chain:
        path = " <- ".join(chain[: chain.index(rule_id) + 1])
        text += f", in a chain this rule started ({path})"
    return text + "; a rule does not run on what its own work caused"


def _describe_step(step: StepDecision) -> list[str]:
    via = f" via {step.connection}" if step.connection else ""
    timing = step.timing
    if timing.when == "later" and timing.at is not None:
        when = f"at {_when(timing.at)} ({timing.reason})"
    elif timing.when == "skip":
        when = f"skipped: {timing.reason}"
    else:
        when = f"now ({timing.reason})" if timing.reason else "now"
    lines = [f"  step {step.step_id}, {step.kind}{via}: {when}"]
    if step.error is not None:
        lines.append(f"    failed: {step.error}")
    for key, value in (step.params or {}).items():
        if value is not None:
            lines.append(f"    {key}: {_short(value)}")
    return lines


def _short(value: Any, limit: int = 72) -> str:
    if isinstance(value, datetime):
        return _when(value)
    text = value if isinstance(value, str) else show(_jsonable(value), limit)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- trace


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


def _condition_trace(result: ConditionResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "source": result.source,
        "value": _jsonable(result.value),
        "error": result.error,
        "operator": result.operator,
        "reads": dict(result.reads),
        "parts": [
            {
                "text": part.text,
                "value": _jsonable(part.value),
                "error": part.error,
                "reads": dict(part.reads),
            }
            for part in result.parts
        ],
    }


def _step_trace(step: StepDecision) -> dict[str, Any]:
    return {
        "id": step.step_id,
        "kind": step.kind,
        "connection": step.connection,
        "params": _jsonable(step.params),
        "error": step.error,
        "timing": {
            "when": step.timing.when,
            "at": _jsonable(step.timing.at),
            "reason": step.timing.reason,
        },
    }
