"""The rule file's models: shape, defaults, durations, and per-kind params."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from brokerhooks.rules.model import (
    CalendarEventStep,
    HttpRequestStep,
    Rule,
    RuleFile,
    TodoTaskStep,
    format_duration,
    parse_duration,
)
from tests.rules.support import rule_from

EXAMPLE = """
id: approved-task
name: Task when a deal is approved
enabled: true
trigger: dealChangesStage
condition: >-
  changes.stage.to.name == "6. Approved" && changes.stage.from.name != "6. Approved"
actions:
  - id: task
    kind: todo_task
    connection: office
    params:
      list: "Deals"
      title: "Order valuation for {{ deal.name }}"
      body: "Approved on {{ now | date }}"
      due: "{{ deal.dueDate | date_add(days=-2) }}"
  - kind: send_mail
    connection: office
    delay: 2h
    params: {to: "a@example.com", subject: Approved, body: Hello}
  - kind: salestrekker_note
    schedule: {before: deal.dueDate, offset: 2d}
    params: {content: Settlement in two days}
"""


def _step(kind: str, **fields: Any) -> dict[str, Any]:
    return {"id": "s", "kind": kind, **fields}


def _errors(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        Rule.model_validate(data)
    return [(tuple(error["loc"]), error["msg"]) for error in caught.value.errors()]


def _rule(*steps: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"id": "r", "trigger": "dealCreated", "actions": list(steps), **fields}


def test_the_example_parses() -> None:
    rule = rule_from(EXAMPLE)

    assert rule.title == "Task when a deal is approved"
    assert rule.trigger == ("dealChangesStage",)
    assert [step.id for step in rule.actions] == ["task", "step-2", "step-3"]
    task = rule.step("task")
    assert isinstance(task, TodoTaskStep)
    assert task.params.list_name == "Deals"
    assert rule.actions[1].delay == timedelta(hours=2)
    schedule = rule.actions[2].schedule
    assert schedule is not None
    assert (schedule.field, schedule.shift) == ("deal.dueDate", -timedelta(days=2))


def test_a_rule_round_trips_through_its_dump() -> None:
    rule = rule_from(EXAMPLE)

    dumped = rule.model_dump(by_alias=True, exclude_none=True)

    assert dumped["actions"][0]["params"]["list"] == "Deals"
    assert dumped["actions"][1]["delay"] == "2h"
    assert Rule.model_validate(dumped) == rule


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        ("dealChangesStage", ("dealChangesStage",)),
        ("DealChangesStage", ("dealChangesStage",)),
        (["noteCreated", "NOTEUPDATED", "noteCreated"], ("noteCreated", "noteUpdated")),
    ],
    ids=["one", "pascal-case", "list-deduplicated"],
)
def test_trigger_is_canonical(trigger: Any, expected: tuple[str, ...]) -> None:
    rule = Rule.model_validate(
        _rule(_step("write_file", params={"path": "x"}), trigger=trigger)
    )

    assert rule.trigger == expected


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ("dealChangeStage", "'dealChangeStage' is not an event type"),
        ([], "trigger must name one event type"),
        (7, "trigger must name one event type"),
    ],
    ids=["unknown", "empty", "number"],
)
def test_bad_triggers(trigger: Any, message: str) -> None:
    errors = _errors(_rule(_step("write_file", params={"path": "x"}), trigger=trigger))

    assert [(loc, text[: len(message)]) for loc, text in errors] == [
        (("trigger",), message)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(minutes=90)),
        ("1D 12H", timedelta(hours=36)),
        ("45s", timedelta(seconds=45)),
    ],
    ids=["minutes", "hours", "days", "weeks", "combined", "spaced-upper", "seconds"],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize(
    "text",
    ["2 hours", "30", 30, "", "-1h", "h2"],
    ids=["words", "no-unit", "int", "empty", "negative", "unit-first"],
)
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_format_duration_is_short() -> None:
    assert format_duration(timedelta(days=9, hours=1)) == "1w2d1h"
    assert format_duration(timedelta(0)) == "0m"


@pytest.mark.parametrize(
    ("step", "loc", "message"),
    [
        (
            _step("todo_task", params={"list": "L", "title": "T"}),
            ("actions", 0, "todo_task", "connection"),
            "todo_task needs a Microsoft 365 connection",
        ),
        (
            _step("salestrekker_note", connection="office", params={"content": "c"}),
            ("actions", 0, "salestrekker_note", "connection"),
            "salestrekker_note takes no connection",
        ),
        (
            _step(
                "write_file",
                delay="1h",
                schedule={"after": "deal.dueDate"},
                params={"path": "p"},
            ),
            ("actions", 0, "write_file", "schedule"),
            "delay and schedule are both given",
        ),
        (
            _step("write_file", schedule={"offset": "1d"}, params={"path": "p"}),
            ("actions", 0, "write_file", "schedule"),
            "a schedule needs exactly one of before and after",
        ),
        (
            _step("write_file", schedule={"after": "deal due"}, params={"path": "p"}),
            ("actions", 0, "write_file", "schedule"),
            "'deal due' is not a field path",
        ),
        (
            _step(
                "calendar_event",
                connection="o",
                params={"subject": "s", "start": "x", "end": "y", "duration": "1h"},
            ),
            ("actions", 0, "calendar_event", "params", "duration"),
            "end and duration are both given",
        ),
        (
            _step("onedrive_upload", connection="o", params={"path": "p"}),
            ("actions", 0, "onedrive_upload", "params", "source"),
            "give exactly one of content and source",
        ),
        (
            _step(
                "onedrive_upload",
                connection="o",
                params={"path": "p", "content": "c", "source": "s"},
            ),
            ("actions", 0, "onedrive_upload", "params", "source"),
            "give exactly one of content and source",
        ),
        (
            _step("Bad Step", params={}),
            ("actions", 0),
            "Input tag 'Bad Step' found using 'kind' does not match",
        ),
        (
            {"id": "Bad Step", "kind": "write_file", "params": {"path": "p"}},
            ("actions", 0, "write_file", "id"),
            "'Bad Step' is not a valid step id",
        ),
    ],
    ids=[
        "m365-needs-connection",
        "note-takes-none",
        "delay-and-schedule",
        "schedule-without-anchor",
        "schedule-bad-path",
        "end-and-duration",
        "upload-neither",
        "upload-both",
        "unknown-kind",
        "bad-step-id",
    ],
)
def test_step_rules(
    step: dict[str, Any], loc: tuple[str | int, ...], message: str
) -> None:
    errors = _errors(_rule(step))

    assert (loc, message) in [(found, text[: len(message)]) for found, text in errors]


def test_step_ids_must_differ() -> None:
    step = _step("write_file", params={"path": "p"})

    errors = _errors(_rule(step, step))

    assert errors == [(("actions",), "two steps have the id 's'")]


def test_rule_id_is_a_slug() -> None:
    errors = _errors(
        _rule(_step("write_file", params={"path": "p"}), id="Approved Task!")
    )

    assert errors == [(("id",), "'Approved Task!' is not a valid rule id")]


def test_params_are_checked_per_kind() -> None:
    errors = _errors(
        _rule(_step("todo_task", connection="o", params={"title": 3, "lst": "x"}))
    )

    assert [error for error in errors if len(error[0]) > 1] == [
        (("actions", 0, "todo_task", "params", "list"), "Field required"),
        (
            ("actions", 0, "todo_task", "params", "title"),
            "Input should be a valid string",
        ),
        (
            ("actions", 0, "todo_task", "params", "lst"),
            "Extra inputs are not permitted",
        ),
    ]


def test_http_method_is_case_insensitive() -> None:
    rule = Rule.model_validate(
        _rule(_step("http_request", params={"url": "https://x", "method": "put"}))
    )

    step = rule.actions[0]
    assert isinstance(step, HttpRequestStep)
    assert step.params.method == "PUT"


def test_calendar_defaults() -> None:
    rule = Rule.model_validate(
        _rule(
            _step(
                "calendar_event",
                connection="o",
                params={"subject": "s", "start": "x", "duration": "90m"},
            )
        )
    )

    step = rule.actions[0]
    assert isinstance(step, CalendarEventStep)
    assert step.params.on_date_change == "update"
    assert step.params.duration == timedelta(minutes=90)


def test_blank_condition_is_none() -> None:
    rule = Rule.model_validate(
        _rule(_step("write_file", params={"path": "p"}), condition="  ")
    )

    assert rule.condition is None


def test_rule_file() -> None:
    document = yaml.safe_load(EXAMPLE)
    disabled = {**document, "id": "off", "enabled": False}

    rule_file = RuleFile.model_validate({"rules": [document, disabled]})

    assert rule_file.rule("off").enabled is False
    assert [rule.id for rule in rule_file.triggered_by("DEALCHANGESSTAGE")] == [
        "approved-task"
    ]
    assert rule_file.triggered_by("dealCreated") == []
    with pytest.raises(ValidationError, match="two rules have the id 'approved-task'"):
        RuleFile.model_validate({"rules": [document, document]})
