"""Validation on save: every problem named by rule, step and field, with a fix."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
import yaml

from brokerhooks.rules.errors import InvalidRules, RuleError
from brokerhooks.rules.model import RuleFile
from brokerhooks.rules.validate import load_rules, validate_rules
from tests.rules.support import rules_file

APPROVED = """
id: approved-task
name: Task when a deal is approved
trigger: dealChangesStage
condition: >-
  changes.stage.to.name == "6. Approved"
  && changes.stage.from.name != "6. Approved"
actions:
  - id: task
    kind: todo_task
    connection: office
    params:
      list: "Deals"
      title: "Order valuation for {{ deal.name }}"
      body: "Approved on {{ now | date }}"
      due: "{{ deal.dueDate | date_add(days=-2) }}"
  - id: mail
    kind: send_mail
    connection: office
    delay: 2h
    params:
      to: "{{ contact.person.contact.email }}"
      cc: [broker@example.com]
      subject: "Approved: {{ deal.name }}"
      body: >-
        <p>Hi {{ contact.person.information.preferredName | default('there') }}</p>
      html: true
"""

EVERY_KIND = """
id: every-kind
trigger: [dealChangesDueDate, dealUpdated]
actions:
  - kind: calendar_event
    connection: office
    schedule: {before: deal.dueDate, offset: 1d}
    params:
      subject: "Settlement: {{ deal.name }}"
      start: "{{ deal.dueDate | date_add(hours=10) }}"
      duration: 1h
      attendees: "{{ contact.person.contact.email }}"
      location: Office
      on_date_change: cancel
  - kind: onedrive_folder
    connection: office
    params:
      path: "Clients/{{ contact.person.information.familyName }}/{{ deal.name }}"
  - kind: onedrive_upload
    connection: office
    params:
      path: "Clients/{{ deal.id }}/summary.txt"
      content: "{{ deal.description }}"
  - kind: salestrekker_note
    params: {content: "Due date moved to {{ deal.dueDate | date }}"}
  - kind: http_request
    params:
      url: "https://hooks.example.com/deals/{{ deal.id }}"
      method: post
      headers: {X-Deal: "{{ deal.id }}"}
      body:
        deal: "{{ deal.name }}"
        amount: "{{ deal.values.onceOff }}"
        labels: ["{{ deal.stage.name }}"]
  - kind: write_file
    schedule: {after: changes.due_date.to, offset: 0d}
    params: {path: "deals/{{ deal.id }}.txt"}
"""


def _errors(*rules: str, connections: list[str] | None = None) -> list[RuleError]:
    return validate_rules(
        rules_file(*rules), source_name="rules.yaml", connections=connections
    )


def test_valid_rules_have_no_errors() -> None:
    assert _errors(APPROVED, EVERY_KIND, connections=["office"]) == []


def test_load_rules_returns_the_file() -> None:
    rule_file = load_rules(rules_file(APPROVED, EVERY_KIND))

    assert isinstance(rule_file, RuleFile)
    assert [rule.id for rule in rule_file.rules] == ["approved-task", "every-kind"]
    assert [step.id for step in rule_file.rule("every-kind").actions][:2] == [
        "step-1",
        "step-2",
    ]


def test_load_rules_raises_with_every_error() -> None:
    text = rules_file(
        APPROVED.replace('deal.name }}"', 'deal.nmae }}"', 1),
        "id: x\ntrigger: nope\nactions: []",
    )

    with pytest.raises(InvalidRules) as caught:
        load_rules(text, source_name="rules.yaml")

    assert len(caught.value.errors) == 3
    assert "3 problem(s) in the rules" in str(caught.value)
    assert "rules.yaml:14: rule approved-task, step task, params.title" in str(
        caught.value
    )


def test_an_already_parsed_document_is_accepted() -> None:
    document = yaml.safe_load(rules_file(APPROVED))

    assert validate_rules(document) == []


def test_the_message_a_person_reads() -> None:
    text = APPROVED.replace('{{ deal.name }}"', '{{ deal.nmae }}"', 1)

    (error,) = _errors(text)

    assert str(error) == (
        "rule approved-task, step task, params.title: 'deal.nmae' is undefined; "
        "did you mean deal.name?"
    )
    assert (error.rule, error.step, error.field) == (
        "approved-task",
        "task",
        "actions[0].params.title",
    )
    assert error.located() == f"rules.yaml:{error.line}: {error}"
    assert error.line == 14


NOTE = {"kind": "write_file", "params": {"path": "p"}}


def _check(rule: dict[str, Any]) -> list[RuleError]:
    """The errors of one rule given as data, filled out to a valid minimum."""
    document = {"id": "r", "trigger": "dealChangesStage", "actions": [NOTE], **rule}
    return validate_rules({"rules": [document]}, source_name="rules.yaml")


def _todo(**params: Any) -> dict[str, Any]:
    step = {"id": "s", "kind": "todo_task", "connection": "office"}
    return {"actions": [{**step, "params": params}]}


def _one(step: dict[str, Any]) -> dict[str, Any]:
    return {"actions": [step]}


@pytest.mark.parametrize(
    ("rule", "where", "problem", "fix"),
    [
        (
            {"id": "Approved Task"},
            ("Approved Task", None, "id"),
            "'Approved Task' is not a valid rule id",
            "use lowercase letters, digits and hyphens, e.g. approved-task",
        ),
        (
            {"trigger": "dealChangeStage"},
            ("r", None, "trigger"),
            "'dealChangeStage' is not an event type",
            "did you mean dealChangesStage?",
        ),
        (
            {"actions": []},
            ("r", None, "actions"),
            "the rule has no steps",
            "add at least one step under actions:",
        ),
        (
            {"conditon": "x"},
            ("r", None, "conditon"),
            "unknown field 'conditon'",
            "did you mean condition?",
        ),
        (
            {"id": None},
            ("#1", None, "id"),
            "id must be text, not empty",
            "see docs/rules.md",
        ),
        (
            _one({"kind": "todo", "params": {}}),
            ("r", "step-1", "actions[0].kind"),
            "'todo' is not an action kind",
            "did you mean todo_task?",
        ),
        (
            _one({"params": {}}),
            ("r", "step-1", "actions[0].kind"),
            "the step has no kind",
            "add kind: one of todo_task, send_mail",
        ),
        (
            _one({"kind": "todo_task", "params": {"list": "L", "title": "T"}}),
            ("r", "step-1", "actions[0].connection"),
            "todo_task needs a Microsoft 365 connection",
            "add connection:",
        ),
        (
            _one({**NOTE, "delay": "2 hours"}),
            ("r", "step-1", "actions[0].delay"),
            "'2 hours' is not a duration",
            "write a number and a unit (s, m, h, d, w), e.g. 30m, 2h",
        ),
        (
            _one({**NOTE, "delay": "1h", "schedule": {"after": "now"}}),
            ("r", "step-1", "actions[0].schedule"),
            "delay and schedule are both given",
            "keep one of them",
        ),
        (
            _one(
                {
                    "kind": "http_request",
                    "params": {"url": "https://x.org", "method": "FETCH"},
                }
            ),
            ("r", "step-1", "actions[0].params.method"),
            "'FETCH' is not allowed",
            "use one of 'GET', 'POST', 'PUT', 'PATCH' or 'DELETE'",
        ),
        (
            _one(
                {
                    "kind": "send_mail",
                    "connection": "o",
                    "params": {
                        "to": "a@b.co",
                        "subject": "s",
                        "body": "b",
                        "html": "maybe",
                    },
                }
            ),
            ("r", "step-1", "actions[0].params.html"),
            "html must be true or false, not 'maybe'",
            "see docs/rules.md",
        ),
    ],
    ids=[
        "rule-id",
        "unknown-event",
        "no-steps",
        "unknown-rule-field",
        "id-not-text",
        "unknown-kind",
        "no-kind",
        "needs-connection",
        "bad-delay",
        "delay-and-schedule",
        "bad-method",
        "bad-bool",
    ],
)
def test_shape_errors(
    rule: dict[str, Any], where: tuple[str, str | None, str], problem: str, fix: str
) -> None:
    errors = _check(rule)

    assert [(error.rule, error.step, error.field) for error in errors] == [where]
    assert errors[0].problem == problem
    assert errors[0].fix.startswith(fix)


def test_a_missing_id_is_named() -> None:
    (error,) = validate_rules(
        {"rules": [{"trigger": "dealCreated", "actions": [NOTE]}]}
    )

    assert str(error) == "rule #1, id: id is missing; add id: a-slug-like-this"


@pytest.mark.parametrize(
    ("params", "field", "problem", "fix"),
    [
        (
            {"list": 2025, "title": "T"},
            "params.list",
            "list must be text, not a number",
            'put the value in quotes, e.g. list: "2025"',
        ),
        (
            {"list": "L", "title": "T", "due": date(2025, 4, 11)},
            "params.due",
            "due must be text, not a date",
            'put the value in quotes, e.g. due: "2025-04-11"',
        ),
        (
            {"list": "L", "title": "T", "titel": "T"},
            "params.titel",
            "unknown field 'titel'",
            "did you mean title?",
        ),
        ({"list": "L"}, "params.title", "title is missing", "add title:"),
        (
            {"list": "L", "title": "{{ deal.nmae }}"},
            "params.title",
            "'deal.nmae' is undefined",
            "did you mean deal.name?",
        ),
        (
            {"list": "L", "title": "{{ deal.name | dat }}"},
            "params.title",
            "there is no filter 'dat'",
            "did you mean date?",
        ),
        (
            {"list": "L", "title": "{{ deal.name }"},
            "params.title",
            "syntax error: unexpected '}'",
            "check that every {{ has its }}",
        ),
        (
            {"list": "L", "title": "T", "due": "{{ deal.stage.name }}"},
            "params.due",
            "rendered '6. Approved', not a date or time",
            "render ISO 8601",
        ),
        (
            {"list": "L", "title": "{{ deal.stage.name | money }}"},
            "params.title",
            "'6. Approved' is not an amount",
            "see docs/rules.md",
        ),
    ],
    ids=[
        "number-for-text",
        "yaml-date-for-text",
        "unknown-param",
        "missing-param",
        "undefined-name",
        "unknown-filter",
        "template-syntax",
        "not-a-date",
        "filter-fails-on-sample",
    ],
)
def test_param_errors(
    params: dict[str, Any], field: str, problem: str, fix: str
) -> None:
    errors = _check(_todo(**params))

    assert [(error.rule, error.step, error.step_field) for error in errors] == [
        ("r", "s", field)
    ]
    assert errors[0].problem == problem
    assert errors[0].fix.startswith(fix)


def test_template_errors_are_found_in_a_step_with_other_errors() -> None:
    errors = _check(_todo(list=1, title="{{ deal.nmae }}"))

    assert [error.step_field for error in errors] == ["params.list", "params.title"]


DEAL_ID = "9c1e5b0a-7d3f-4a2e-8b61-2f4d9e0c7a15"


@pytest.mark.parametrize(
    ("step", "field", "problem", "fix"),
    [
        (
            {
                "kind": "send_mail",
                "connection": "o",
                "params": {"to": "{{ deal.stage.name }}", "subject": "s", "body": "b"},
            },
            "params.to",
            "'6. Approved' is not an e-mail address",
            "separate addresses with commas",
        ),
        (
            {"kind": "http_request", "params": {"url": "ftp://x.org/{{ deal.id }}"}},
            "params.url",
            f"rendered 'ftp://x.org/{DEAL_ID}', not an http or https URL",
            "write a full URL",
        ),
        (
            {"kind": "write_file", "params": {"path": "../{{ deal.id }}.txt"}},
            "params.path",
            f"rendered '../{DEAL_ID}.txt', which leaves the folder it belongs in",
            "write a relative path without ..",
        ),
        (
            {"kind": "onedrive_folder", "connection": "o", "params": {"path": "/x"}},
            "params.path",
            "rendered '/x', which leaves the folder it belongs in",
            "write a relative path",
        ),
        (
            {
                "kind": "http_request",
                "params": {"url": "https://x.org", "body": {"a": ["{{ deal.nme }}"]}},
            },
            "params.body.a[0]",
            "'deal.nme' is undefined",
            "did you mean deal.name?",
        ),
        (
            {**NOTE, "schedule": {"before": "deal.name"}},
            "schedule.before",
            "deal.name is a string, not a date",
            "count from a date field: deal.dueDate, deal.timeStamp",
        ),
        (
            {**NOTE, "schedule": {"after": "deal.dueDat"}},
            "schedule.after",
            "'deal.dueDat' is undefined",
            "did you mean deal.dueDate?",
        ),
        (
            {**NOTE, "schedule": {"after": "note.timeStamp"}},
            "schedule.after",
            "'note.timeStamp' cannot be read: "
            "note is always null on dealChangesStage events",
            "note is set only on noteCreated, noteUpdated events",
        ),
    ],
    ids=[
        "not-an-address",
        "not-http",
        "path-leaves-folder",
        "absolute-path",
        "nested-body-template",
        "schedule-not-a-date",
        "schedule-typo",
        "schedule-absent",
    ],
)
def test_step_checks(step: dict[str, Any], field: str, problem: str, fix: str) -> None:
    errors = _check(_one(step))

    assert [(error.step, error.step_field) for error in errors] == [("step-1", field)]
    assert errors[0].problem == problem
    assert errors[0].fix.startswith(fix)


@pytest.mark.parametrize(
    ("condition", "problem", "fix"),
    [
        (
            'changes.stge.to.name == "x"',
            "'changes.stge' is undefined",
            "did you mean changes.stage?",
        ),
        (
            'note.content == "x"',
            "'note.content' cannot be read: note is always null",
            "note is set only on",
        ),
        (
            'deal.name.startswith("N")',
            "startswith() is not a CEL function",
            "did you mean startsWith()?",
        ),
        (
            'deal.name = "x"',
            "CEL syntax error at column 11, before '= \"x\"'",
            "check the operators",
        ),
    ],
    ids=["unknown-change", "absent-snapshot", "unknown-function", "syntax"],
)
def test_condition_errors(condition: str, problem: str, fix: str) -> None:
    errors = _check({"condition": condition})

    assert [(error.rule, error.step, error.field) for error in errors] == [
        ("r", None, "condition")
    ]
    assert errors[0].problem.startswith(problem)
    assert errors[0].fix.startswith(fix)


def test_every_trigger_event_is_checked() -> None:
    rule = {
        "trigger": ["dealChangesStage", "noteCreated"],
        **_todo(list="L", title="Moved to {{ changes.stage.to.name }}"),
    }

    errors = _check(rule)

    assert [error.problem for error in errors] == [
        "'changes.stage' is undefined on noteCreated events"
    ]


def test_a_snapshot_missing_on_one_trigger_event_is_an_error() -> None:
    rule = {
        "trigger": ["dealUpdated", "contactUpdated"],
        **_todo(list="L", title="{{ deal.name | upper }}"),
    }

    errors = _check(rule)

    assert [error.problem for error in errors] == [
        "'deal.name' cannot be read: deal is always null on contactUpdated events"
    ]


def test_connections_are_checked_when_known() -> None:
    rule = {
        "actions": [{**_todo(list="L", title="T")["actions"][0], "connection": "ofice"}]
    }
    document = {"rules": [{"id": "r", "trigger": "dealCreated", **rule}]}

    assert validate_rules(document) == []
    errors = validate_rules(document, connections=["office", "mail"])
    assert [(error.step_field, error.problem, error.fix) for error in errors] == [
        ("connection", "there is no connection named 'ofice'", "did you mean office?")
    ]


def test_duplicate_rule_ids() -> None:
    errors = _errors(APPROVED, APPROVED)

    assert [(error.rule, error.field, error.problem) for error in errors] == [
        ("approved-task", "id", "another rule already has the id 'approved-task'")
    ]


@pytest.mark.parametrize(
    ("text", "line", "problem", "fix"),
    [
        (
            "rules:\n  - id: a\n\ttrigger: x\n",
            3,
            "found character '\\t' that cannot start any token",
            "indent with spaces",
        ),
        (
            "rules:\n  - id: a\n    id: b\n",
            3,
            "the key 'id' is given twice",
            "keep one of them",
        ),
        (
            "rules:\n  - id: a\n    actions:\n      - params:\n"
            "          title: {{ deal.name }}\n",
            5,
            "found unhashable key",
            'quote a value that starts with {{, e.g. title: "{{ deal.name }}"',
        ),
        ("rules: [\n", 2, "expected the node content", "fix the YAML"),
        (
            "rules: [!!python/object:os.system {}]\n",
            1,
            "could not determine a constructor for the tag",
            "fix the YAML",
        ),
    ],
    ids=["tab", "repeated-key", "unquoted-template", "unclosed", "python-tag"],
)
def test_yaml_errors(text: str, line: int, problem: str, fix: str) -> None:
    (error,) = validate_rules(text, source_name="rules.yaml")

    assert (error.rule, error.field, error.line) == (None, "yaml", line)
    assert error.problem.startswith(problem)
    assert error.fix.startswith(fix)


START = "start the file with rules: followed by a list of rules"


@pytest.mark.parametrize(
    ("text", "errors"),
    [
        ("", []),
        ("rules: []\n", []),
        (
            "- id: a\n",
            [f"rules: the file is not a mapping; {START}"],
        ),
        ("rule: []\n", ["rule: unknown field 'rule'; did you mean rules?"]),
        (
            "rules: {id: a}\n",
            [f"rules: rules is not a list; {START}"],
        ),
        (
            "rules: [7]\n",
            [
                "rule #1, rules[0]: a rule must be a mapping; "
                "give it id, trigger, condition and actions keys"
            ],
        ),
    ],
    ids=[
        "empty",
        "no-rules",
        "a-list",
        "misspelt-rules",
        "rules-not-a-list",
        "rule-not-a-mapping",
    ],
)
def test_file_shape(text: str, errors: list[str]) -> None:
    assert [str(error) for error in validate_rules(text)] == errors


@pytest.mark.parametrize(
    "text",
    [
        "rules: &a [*a]\n",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]\n"
            for previous, name in zip("abcde", "bcdef", strict=True)
        ),
    ],
    ids=["alias-in-its-anchor", "billion-laughs"],
)
def test_runaway_aliases_are_refused(text: str) -> None:
    (error,) = validate_rules(text)

    assert error.field == "yaml"
    assert error.problem.startswith("the file expands to more than 20000 values")
    assert error.fix == "write the values out instead of using aliases (*name)"


def test_merge_keys_are_fine() -> None:
    text = (
        "rules:\n"
        "  - &first {id: a, trigger: dealCreated, actions: [{kind: write_file, "
        "params: {path: x}}]}\n"
        "  - {<<: *first, id: b}\n"
    )

    assert validate_rules(text) == []


def test_a_step_must_be_a_mapping() -> None:
    (error,) = _check({"actions": ["todo_task"]})

    assert str(error) == (
        "rule r, step step-1, actions[0]: a step must be a mapping, not 'todo_task'; "
        "give it kind and params, e.g. - kind: todo_task"
    )
