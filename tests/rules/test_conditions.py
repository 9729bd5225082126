"""CEL conditions: values, failures that explain themselves, and name checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brokerhooks.rules.conditions import (
    check_condition,
    compile_condition,
    evaluate_condition,
    from_cel,
    to_cel,
)
from brokerhooks.rules.errors import ConditionSyntaxError
from brokerhooks.rules.fields import sample_context


def _evaluate(source: str, event_type: str = "dealChangesStage") -> Any:
    return evaluate_condition(compile_condition(source), sample_context(event_type))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('changes.stage.to.name == "6. Approved"', True),
        ('changes.stage.from.name == "6. Approved"', False),
        ("deal.values.onceOff > 600000.0", True),
        ("deal.values.onceOff > 600000", True),
        ('deal.labels.exists(l, l.name == "Refinance")', True),
        ('"VIP" in deal.labels.map(l, l.name)', False),
        ("has(changes.stage) && !has(changes.owner)", True),
        ('deal["stage"]["name"].startsWith("6.")', True),
        ("size(deal.idClients) == 2", True),
        ("fromMillis(deal.dueDate) > now", True),
        ('fromMillis(deal.dueDate) < now + duration("168h")', False),
        ("event.received_at <= now", True),
        ('contact.person.contact.email.endsWith("@example.com")', True),
        ("note == null", True),
        ('event.payload.event == "dealChangesStage"', True),
        ("deal.dueDate != null", True),
        ("null == deal.values.onceOff", False),
        ('deal.dueDate == "soon"', False),
        ("deal.values.onceOff == 650000", True),
        ("650000 >= deal.values.onceOff", True),
        ("size(deal.labels) < 1.5", True),
    ],
    ids=[
        "stage-to",
        "stage-from",
        "amount-double",
        "amount-int",
        "label-exists",
        "label-in-map",
        "has",
        "index-syntax",
        "size",
        "from-millis",
        "within-a-week",
        "timestamps",
        "related-contact",
        "null-snapshot",
        "payload",
        "int-is-not-null",
        "double-is-not-null",
        "types-differ",
        "int-equals-double",
        "int-orders-double",
        "int-below-double",
    ],
)
def test_values(source: str, expected: bool) -> None:
    result = _evaluate(source)

    assert result.error is None
    assert result.value is expected
    assert result.passed is expected


def test_no_condition_passes() -> None:
    result = evaluate_condition(None, sample_context("dealCreated"))

    assert result.passed
    assert result.explain() == ["no condition: true"]


@pytest.mark.parametrize(
    ("source", "event_type", "error"),
    [
        (
            'changes.owner.to == "x"',
            "dealChangesStage",
            "'changes.owner' is undefined: owner did not change; "
            "test has(changes.owner) first",
        ),
        (
            'deal.name == "x"',
            "contactUpdated",
            "'deal.name' cannot be read: deal is null; check deal != null first",
        ),
        (
            "deal.labels[3].name == 'x'",
            "dealChangesStage",
            "'deal.labels[3]' is undefined: deal.labels has no item 3",
        ),
        (
            "deal.name",
            "dealChangesStage",
            'gave "Nguyen - Refinance 12 Banksia St, Marrickville", not true or false',
        ),
        (
            "deal.values.onceOff > 1 + 0.5",
            "dealChangesStage",
            "cannot apply + to int and double",
        ),
        ("1 / 0 == 1", "dealChangesStage", "modulus or divide by zero"),
        ("nosuch == 1", "dealChangesStage", "unknown name 'nosuch'"),
    ],
    ids=[
        "unchanged",
        "null-snapshot",
        "index",
        "not-bool",
        "type-clash",
        "divide",
        "unknown-name",
    ],
)
def test_failures_explain_themselves(source: str, event_type: str, error: str) -> None:
    result = _evaluate(source, event_type)

    assert not result.passed
    assert result.error is not None
    assert result.error.startswith(error)


def test_a_guarded_change_is_false_not_failed() -> None:
    result = _evaluate('has(changes.owner) && changes.owner.to == "x"')

    assert result.error is None
    assert result.value is False


def test_and_parts_are_explained() -> None:
    source = 'changes.stage.to.name == "6. Approved" && deal.values.onceOff > 700000.0'

    result = _evaluate(source)

    assert result.value is False
    assert result.operator == "&&"
    assert [(part.text, part.value) for part in result.parts] == [
        ('changes.stage.to.name == "6. Approved"', True),
        ("deal.values.onceOff > 700000.0", False),
    ]
    assert result.parts[1].reads == (("deal.values.onceOff", "650000.0"),)
    assert result.explain() == [
        "condition false",
        '  && changes.stage.to.name == "6. Approved"  -> true',
        '       changes.stage.to.name = "6. Approved"',
        "  && deal.values.onceOff > 700000.0  -> false",
        "       deal.values.onceOff = 650000.0",
    ]


def test_or_parts_show_which_failed() -> None:
    result = _evaluate('changes.owner.to == "x" || (a_b() && true) || deal.isActive')

    assert result.value is True
    assert result.operator == "||"
    assert [part.text for part in result.parts] == [
        'changes.owner.to == "x"',
        "(a_b() && true)",
        "deal.isActive",
    ]
    first, second, third = result.parts
    assert first.error is not None
    assert "owner did not change" in first.error
    assert second.error == "unknown name 'a_b'"
    assert third.value is True


def test_a_mixed_expression_splits_at_or() -> None:
    condition = compile_condition("deal.isWon && deal.isSettled || deal.isLost")

    assert condition.operator == "||"
    assert [part.text for part in condition.parts] == [
        "deal.isWon && deal.isSettled",
        "deal.isLost",
    ]


@pytest.mark.parametrize(
    "source",
    ["deal.isWon", "deal.isWon ? true : false", "!(deal.isWon && deal.isLost)"],
    ids=["single", "ternary", "negated"],
)
def test_no_parts_without_top_level_and_or(source: str) -> None:
    result = _evaluate(source)

    assert result.parts == ()
    assert result.reads


def test_whole_failure_names_the_first_failing_part() -> None:
    result = _evaluate('changes.stge.to.name == "x" && changes.owner.to == "y"')

    assert result.error == "'changes.stge' is undefined; did you mean changes.stage?"


def test_unusable_data_fails_without_raising() -> None:
    context = {**sample_context("dealChangesStage"), "deal": {"odd": {1, 2}}}

    result = evaluate_condition(compile_condition("deal.isWon"), context)

    assert result.error == "unusable data: set values cannot be used in a condition"


@pytest.mark.parametrize(
    ("source", "message", "column"),
    [
        ('changes.stage.to.name = "x"', "CEL syntax error at column 23", 23),
        ("deal.isWon &&", "CEL syntax error at column 12", 12),
        ('deal.name == "unclosed', "CEL syntax error", None),
    ],
    ids=["single-equals", "dangling-and", "unclosed-string"],
)
def test_syntax_errors(source: str, message: str, column: int | None) -> None:
    with pytest.raises(ConditionSyntaxError) as caught:
        compile_condition(source)

    assert str(caught.value).startswith(message)
    if column is not None:
        assert caught.value.column == column


def test_compiled_once() -> None:
    assert compile_condition("deal.isWon") is compile_condition("deal.isWon")


@pytest.mark.parametrize(
    ("source", "event_types", "problems"),
    [
        ('changes.stage.to.name == "6. Approved"', ["dealChangesStage"], []),
        ('deal.labels.exists(l, l.name == "VIP")', ["dealUpdated"], []),
        ('note.content.contains("rate") && deal.name != ""', ["noteCreated"], []),
        ('event.payload.whatever == "x"', ["dealCreated"], []),
        (
            'changes.stge.to.name == "x"',
            ["dealChangesStage"],
            [("'changes.stge' is undefined", "did you mean changes.stage?")],
        ),
        (
            'note.content == "x"',
            ["dealChangesStage"],
            [
                (
                    "'note.content' cannot be read: "
                    "note is always null on dealChangesStage events",
                    "note is set only on noteCreated, noteUpdated events; "
                    "trigger on those or remove the reference",
                )
            ],
        ),
        (
            'deal.labels.exists(l, l.nmae == "VIP")',
            ["dealUpdated"],
            [("'l.nmae' is undefined", "did you mean l.name?")],
        ),
        (
            'deal.lables.exists(l, l.name == "VIP")',
            ["dealUpdated"],
            [("'deal.lables' is undefined", "did you mean deal.labels?")],
        ),
        (
            'deal.name.startswith("N")',
            ["dealUpdated"],
            [("startswith() is not a CEL function", "did you mean startsWith()?")],
        ),
        (
            "changes.stage != null",
            ["dealChangesStage", "contactUpdated"],
            [
                (
                    "'changes.stage' is undefined on contactUpdated events",
                    "the fields of changes are: first_name",
                )
            ],
        ),
    ],
    ids=[
        "valid",
        "comprehension",
        "note-and-its-deal",
        "free-form-payload",
        "change-typo",
        "absent-snapshot",
        "comprehension-typo",
        "list-typo-reported-once",
        "function-typo",
        "mixed-subjects",
    ],
)
def test_static_check(
    source: str, event_types: list[str], problems: list[tuple[str, str]]
) -> None:
    found = check_condition(compile_condition(source), event_types)

    assert [
        (problem.problem, problem.fix[: len(fix)])
        for problem, (_, fix) in zip(found, problems, strict=False)
    ] == problems
    assert len(found) == len(problems)


def test_to_cel_and_back() -> None:
    moment = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
    value = {
        "text": "x",
        "count": 3,
        "amount": 1.5,
        "flag": True,
        "nothing": None,
        "items": [1, "a"],
        "when": moment,
        "wait": timedelta(hours=2),
    }

    assert from_cel(to_cel(value)) == value


def test_naive_datetimes_are_utc() -> None:
    converted = from_cel(to_cel(datetime(2025, 3, 14, 9, 30)))

    assert converted == datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
