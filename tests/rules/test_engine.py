"""The engine's decisions: trigger, condition, rendered params and timing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter

from brokerhooks.rules.engine import (
    decide_step,
    describe,
    evaluate,
    render_params,
    step_timing,
)
from brokerhooks.rules.fields import SAMPLE_NOW, sample_context
from brokerhooks.rules.model import MICROSOFT_365_KINDS, Step, StepBase
from tests.rules.support import rule_from

SYDNEY = ZoneInfo("Australia/Sydney")

APPROVED = """
id: approved-task
trigger: dealChangesStage
condition: >-
  changes.stage.to.name == "6. Approved"
  && changes.stage.from.name != "6. Approved"
actions:
  - id: task
    kind: todo_task
    connection: office
    params:
      list: Deals
      title: "Order valuation for {{ deal.name }}"
      due: "{{ deal.dueDate | date_add(days=-2) }}"
  - id: mail
    kind: send_mail
    connection: office
    delay: 2h
    params:
      to: "{{ contact.person.contact.email }}; broker@example.com"
      subject: "Approved"
      body: "<p>{{ deal.labels[0].name }} & co</p>"
      html: true
"""


def _step(
    kind: str, *, timing: dict[str, Any] | None = None, **params: Any
) -> StepBase:
    """A step of ``kind`` with ``params``, and a delay or schedule if given."""
    connection = {"connection": "office"} if kind in MICROSOFT_365_KINDS else {}
    data = {"id": "s", "kind": kind, **connection, **(timing or {}), "params": params}
    return TypeAdapter(Step).validate_python(data)


def test_a_rule_fires() -> None:
    context = sample_context("dealChangesStage")
    context["deal"]["labels"][0]["name"] = "Smith & <Jones>"

    decision = evaluate(rule_from(APPROVED), context)

    assert decision.outcome == "fired"
    assert decision.fired
    task, mail = decision.steps
    assert task.runnable
    assert mail.runnable
    assert task.params == {
        "list": "Deals",
        "title": "Order valuation for Nguyen - Refinance 12 Banksia St, Marrickville",
        "body": None,
        "due": datetime(2025, 4, 9, tzinfo=SYDNEY),
        "reminder": None,
    }
    assert task.timing.when == "now"
    assert mail.params is not None
    assert mail.params["to"] == ["linh.nguyen@example.com", "broker@example.com"]
    assert mail.params["body"] == "<p>Smith &amp; &lt;Jones&gt; & co</p>"
    assert (mail.timing.when, mail.timing.at) == (
        "later",
        SAMPLE_NOW + timedelta(hours=2),
    )


@pytest.mark.parametrize(
    ("event_type", "outcome"),
    [
        ("DealChangesStage", "fired"),
        ("dealChangesOwner", "not_triggered"),
        ("contactCreated", "not_triggered"),
    ],
    ids=["pascal-case", "other-deal-event", "other-subject"],
)
def test_trigger(event_type: str, outcome: str) -> None:
    context = sample_context("dealChangesStage")
    context["event"]["type"] = event_type

    assert evaluate(rule_from(APPROVED), context).outcome == outcome


def test_the_condition_decides() -> None:
    context = sample_context("dealChangesStage")
    context["changes"]["stage"]["to"]["name"] = "7. Settled"

    decision = evaluate(rule_from(APPROVED), context)

    assert decision.outcome == "condition_false"
    assert decision.steps == ()
    assert decision.condition is not None
    assert [part.value for part in decision.condition.parts] == [False, True]


def test_a_failing_condition_is_recorded() -> None:
    rule = rule_from(
        APPROVED.replace("trigger: dealChangesStage", "trigger: dealChangesOwner")
    )

    decision = evaluate(rule, sample_context("dealChangesOwner"))

    assert decision.outcome == "condition_failed"
    assert decision.condition is not None
    assert decision.condition.error == (
        "'changes.stage' is undefined: stage did not change; "
        "test has(changes.stage) first"
    )


def test_a_condition_that_does_not_parse_is_recorded() -> None:
    rule = rule_from(APPROVED.replace("&& changes", "&&& changes"))

    decision = evaluate(rule, sample_context("dealChangesStage"))

    assert decision.outcome == "condition_failed"
    assert decision.condition is not None
    assert decision.condition.error is not None
    assert decision.condition.error.startswith("does not parse: CEL syntax error")


def test_disabled_rules_do_nothing_unless_back_tested() -> None:
    rule = rule_from(APPROVED + "enabled: false\n")
    context = sample_context("dealChangesStage")

    assert evaluate(rule, context).outcome == "disabled"
    assert evaluate(rule, context, ignore_disabled=True).outcome == "fired"


def test_a_template_error_stops_only_its_step() -> None:
    context = sample_context("dealChangesStage")
    context["contact"] = None

    decision = evaluate(rule_from(APPROVED), context)

    task, mail = decision.steps
    assert task.runnable
    assert not mail.runnable
    assert mail.params is None
    assert mail.error == (
        "params.to: 'contact.person.contact.email' cannot be read: contact is null; "
        "wrap it in {% if contact %}"
    )


@pytest.mark.parametrize(
    ("step", "change", "error"),
    [
        (
            _step(
                "send_mail",
                to="{{ contact.person.contact.email }}",
                subject="s",
                body="b",
            ),
            ("contact", None),
            "params.to: rendered to no e-mail address",
        ),
        (
            _step("todo_task", list="L", title="{{ deal.description }}"),
            ("description", None),
            "params.title: rendered to empty text",
        ),
        (
            _step("calendar_event", subject="s", start="{{ deal.dueDate }}"),
            ("dueDate", None),
            "params.start: rendered to empty text",
        ),
        (
            _step("todo_task", list="L", title="T", due="{{ deal.description }}"),
            ("description", "soon"),
            "params.due: rendered 'soon', not a date or time",
        ),
    ],
    ids=["no-address", "empty-title", "empty-start", "not-a-date"],
)
def test_rendered_values_are_checked(
    step: StepBase, change: tuple[str, Any], error: str
) -> None:
    context = sample_context("dealChangesStage")
    key, value = change
    if key == "contact":
        context["contact"]["person"]["contact"]["email"] = value
    else:
        context["deal"][key] = value

    decision = decide_step(step, context)

    assert decision.error is not None
    assert decision.error.startswith(error)


def test_optional_params_may_render_empty() -> None:
    step = _step("todo_task", list="L", title="T", due="{{ deal.dueDate }}")
    context = sample_context("dealChangesStage")
    context["deal"]["dueDate"] = None

    assert render_params(step, context)["due"] is None


def test_json_bodies_and_headers_render_leaf_by_leaf() -> None:
    step = _step(
        "http_request",
        url="https://x.org/{{ deal.id }}",
        headers={"X-Stage": "{{ deal.stage.name }}"},
        body={
            "deal": "{{ deal.name }}",
            "amount": 650000,
            "tags": ["{{ deal.labels[0].name }}"],
        },
    )

    params = render_params(step, sample_context("dealChangesStage"))

    assert params["url"] == "https://x.org/9c1e5b0a-7d3f-4a2e-8b61-2f4d9e0c7a15"
    assert params["method"] == "POST"
    assert params["headers"] == {"X-Stage": "6. Approved"}
    assert params["body"] == {
        "deal": "Nguyen - Refinance 12 Banksia St, Marrickville",
        "amount": 650000,
        "tags": ["Refinance"],
    }


@pytest.mark.parametrize(
    ("timing", "now", "when", "at", "reason"),
    [
        ({}, SAMPLE_NOW, "now", None, ""),
        (
            {"delay": "30m"},
            SAMPLE_NOW,
            "later",
            SAMPLE_NOW + timedelta(minutes=30),
            "30m after the event",
        ),
        (
            {"delay": "30m"},
            SAMPLE_NOW + timedelta(hours=1),
            "now",
            None,
            "30m after the event (2025-03-14 10:00 +1100) has passed",
        ),
        (
            {"schedule": {"before": "deal.dueDate", "offset": "2d"}},
            SAMPLE_NOW,
            "later",
            datetime(2025, 4, 9, tzinfo=SYDNEY),
            "2d before deal.dueDate",
        ),
        (
            {"schedule": {"after": "deal.dueDate", "offset": "1w"}},
            SAMPLE_NOW,
            "later",
            datetime(2025, 4, 18, tzinfo=SYDNEY),
            "1w after deal.dueDate",
        ),
        (
            {"schedule": {"after": "deal.dueDate"}},
            SAMPLE_NOW,
            "later",
            datetime(2025, 4, 11, tzinfo=SYDNEY),
            "deal.dueDate",
        ),
        (
            {"schedule": {"before": "deal.dueDate", "offset": "4w"}},
            SAMPLE_NOW,
            "now",
            None,
            "4w before deal.dueDate (2025-03-14 00:00 +1100) has passed",
        ),
        (
            {"schedule": {"before": "changes.due_date.to", "offset": "1d"}},
            SAMPLE_NOW,
            "skip",
            None,
            "changes.due_date.to is empty, so the step has no time",
        ),
    ],
    ids=[
        "immediate",
        "delay",
        "delay-passed",
        "before-date",
        "after-date",
        "at-date",
        "scheduled-time-passed",
        "no-date",
    ],
)
def test_timing(
    timing: dict[str, Any], now: datetime, when: str, at: datetime | None, reason: str
) -> None:
    step = _step("write_file", timing=timing, path="p")
    context = {**sample_context("dealChangesStage"), "now": now}

    found = step_timing(step, context)

    assert (found.when, found.at, found.reason) == (when, at, reason)


def test_a_null_schedule_date_skips_the_step() -> None:
    rule = rule_from(
        "id: r\ntrigger: dealChangesStage\nactions:\n"
        "  - {kind: write_file, schedule: {before: deal.dueDate}, params: {path: p}}"
    )
    context = sample_context("dealChangesStage")
    context["deal"]["dueDate"] = None

    (step,) = evaluate(rule, context).steps

    assert step.timing.when == "skip"
    assert step.timing.reason == "deal.dueDate is empty, so the step has no time"
    assert not step.runnable


def test_now_must_be_given() -> None:
    context = {**sample_context("dealChangesStage"), "now": datetime(2025, 3, 14)}

    with pytest.raises(ValueError, match="'now' must be an aware datetime"):
        step_timing(_step("write_file", path="p"), context)


def test_describe() -> None:
    context = sample_context("dealChangesStage")
    context["contact"] = None

    text = describe(evaluate(rule_from(APPROVED), context))

    assert text.splitlines() == [
        "rule approved-task on dealChangesStage: fired",
        "  condition true",
        '    && changes.stage.to.name == "6. Approved"  -> true',
        '         changes.stage.to.name = "6. Approved"',
        '    && changes.stage.from.name != "6. Approved"  -> true',
        '         changes.stage.from.name = "5. Submitted"',
        "  step task, todo_task via office: now",
        "    list: Deals",
        "    title: Order valuation for Nguyen - Refinance 12 Banksia St, Marrickville",
        "    due: 2025-04-09 00:00 +1000",
        "  step mail, send_mail via office: "
        "at 2025-03-14 11:30 +1100 (2h after the event)",
        "    failed: params.to: 'contact.person.contact.email' cannot be read: "
        "contact is null; wrap it in {% if contact %}",
    ]


def test_describe_a_rule_that_did_not_fire() -> None:
    context = sample_context("dealChangesOwner")

    text = describe(evaluate(rule_from(APPROVED), context))

    assert text == "rule approved-task on dealChangesOwner: not triggered"


def test_the_trace_is_json() -> None:
    decision = evaluate(rule_from(APPROVED), sample_context("dealChangesStage"))

    trace = json.loads(json.dumps(decision.as_trace()))

    assert trace["outcome"] == "fired"
    assert trace["condition"]["parts"][0]["reads"] == {
        "changes.stage.to.name": '"6. Approved"'
    }
    assert trace["steps"][0]["params"]["due"] == "2025-04-09T00:00:00+10:00"
    assert trace["steps"][1]["timing"] == {
        "when": "later",
        "at": "2025-03-14T11:30:00+11:00",
        "reason": "2h after the event",
    }


def _caused_by(*rules: str) -> dict[str, Any]:
    return {
        "rule": rules[0],
        "step": "task",
        "kind": "todo_task",
        "action": f"e1:{rules[0]}:task",
        "event": "e1",
        "rules": list(rules),
    }


def test_a_rule_does_not_run_on_its_own_echo() -> None:
    context = sample_context("dealChangesStage")
    context["event"]["caused_by"] = _caused_by("approved-task")

    decision = evaluate(rule_from(APPROVED), context)

    assert (decision.outcome, decision.fired, decision.steps) == ("echo", False, ())
    assert decision.as_trace()["echo"]["action"] == "e1:approved-task:task"
    assert describe(decision).splitlines() == [
        "rule approved-task on dealChangesStage: echo",
        "  not run: this event was caused by step task of rule approved-task "
        "for event e1; a rule does not run on what its own work caused",
    ]


def test_a_rule_does_not_run_on_a_chain_it_started() -> None:
    context = sample_context("dealChangesStage")
    context["event"]["caused_by"] = _caused_by("mailer", "approved-task", "first")

    text = describe(evaluate(rule_from(APPROVED), context))

    assert text.splitlines()[1] == (
        "  not run: this event was caused by step task of rule mailer for "
        "event e1, in a chain this rule started (mailer <- approved-task); a rule "
        "does not run on what its own work caused"
    )


def test_a_rule_runs_on_what_other_rules_made() -> None:
    context = sample_context("dealChangesStage")
    context["event"]["caused_by"] = _caused_by("mailer", "first")

    assert evaluate(rule_from(APPROVED), context).outcome == "fired"
