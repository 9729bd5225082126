"""Templates: rendering, filters, strict names, the sandbox, and name checks."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from brokerhooks.rules.errors import TemplateError
from brokerhooks.rules.fields import sample_context
from brokerhooks.rules.templates import (
    check_template,
    render,
    template_references,
    to_datetime,
)

SYDNEY = ZoneInfo("Australia/Sydney")


def _render(source: str, event_type: str = "dealChangesStage", **extra: Any) -> str:
    return render(source, {**sample_context(event_type), **extra}, name="params.title")


def _fails(
    source: str, event_type: str = "dealChangesStage", **extra: Any
) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        _render(source, event_type, **extra)
    return caught.value


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "Order valuation for {{ deal.name }}",
            "Order valuation for Nguyen - Refinance 12 Banksia St, Marrickville",
        ),
        ("{{ deal.values.onceOff }}", "650000.0"),
        (
            "{{ changes.stage.from.name }} -> {{ changes.stage.to.name }}",
            "5. Submitted -> 6. Approved",
        ),
        ("{% for l in deal.labels %}[{{ l.name }}]{% endfor %}", "[Refinance]"),
        ("{% if changes.owner is defined %}moved{% else %}same{% endif %}", "same"),
        ("{{ deal.name.upper()[:6] }}", "NGUYEN"),
        (
            "{{ deal.description }}|{{ note }}",
            "Refinance to a 3-year fixed rate; valuation ordered.|",
        ),
        ("{{ now }}", "2025-03-14T09:30:00+11:00"),
        ("{{ deal.isWon }}", "False"),
        ("{{ deal.labels | length }}", "1"),
    ],
    ids=[
        "field",
        "values-is-a-field",
        "change",
        "loop",
        "is-defined",
        "string-method",
        "null-is-empty",
        "datetime-is-iso",
        "bool",
        "builtin-filter",
    ],
)
def test_render(source: str, expected: str) -> None:
    assert _render(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ deal.dueDate | date }}", "11 Apr 2025"),
        ("{{ deal.dueDate | date('%Y-%m-%d') }}", "2025-04-11"),
        ("{{ now | date('%d/%m/%Y %H:%M') }}", "14/03/2025 09:30"),
        ("{{ '2025-04-11' | date }}", "11 Apr 2025"),
        ("{{ none | date }}", ""),
        ("{{ deal.dueDate | date_add(days=-2) }}", "2025-04-09T00:00:00+10:00"),
        ("{{ deal.dueDate | date_add(hours=9) | date('%H:%M') }}", "09:00"),
        (
            "{{ now | date_add(weeks=1, minutes=30) | date('%d %b %H:%M') }}",
            "21 Mar 10:00",
        ),
        ("{{ none | date_add(days=1) }}", ""),
        ("{{ deal.values.onceOff | money }}", "$650,000.00"),
        ("{{ deal.values.onceOff | money(places=0) }}", "$650,000"),
        ("{{ -1234.5 | money('NZ$') }}", "-NZ$1,234.50"),
        ("{{ none | money }}", ""),
        ("{{ nothing_here | default('n/a') }}", "n/a"),
        ("{{ none | default('n/a') }}", "n/a"),
        ("{{ '' | default('n/a') }}", "n/a"),
        ("{{ deal.name | default('n/a') | truncate(6, end='') }}", "Nguyen"),
    ],
    ids=[
        "date",
        "date-format",
        "date-of-now",
        "date-of-iso-text",
        "date-of-null",
        "date-add",
        "date-add-hours",
        "date-add-weeks-minutes",
        "date-add-null",
        "money",
        "money-whole",
        "money-negative-symbol",
        "money-null",
        "default-undefined",
        "default-null",
        "default-empty",
        "default-keeps-values",
    ],
)
def test_filters(source: str, expected: str) -> None:
    assert _render(source, none=None) == expected


def test_dates_follow_the_broker_time_zone() -> None:
    context = sample_context("dealChangesDueDate")
    context["broker"]["timezone"] = "Pacific/Auckland"

    assert render("{{ deal.dueDate | date('%d %H:%M') }}", context) == "11 02:00"


def test_dates_default_to_sydney() -> None:
    context = sample_context("dealChangesDueDate")
    context["broker"] = {"id": "b", "name": "Broker"}

    assert render("{{ deal.dueDate | date('%d %H:%M') }}", context) == "11 00:00"


def test_a_bad_time_zone_is_an_error() -> None:
    context = sample_context("dealChangesDueDate")
    context["broker"]["timezone"] = "Mars/Olympus"

    with pytest.raises(
        TemplateError, match=r"broker\.timezone 'Mars/Olympus' is not a time zone"
    ):
        render("{{ deal.dueDate | date }}", context)


@pytest.mark.parametrize(
    ("source", "event_type", "problem", "fix", "missing"),
    [
        (
            "{{ deal.nmae }}",
            "dealChangesStage",
            "'deal.nmae' is undefined",
            "did you mean deal.name?",
            "deal.nmae",
        ),
        (
            "{{ changes.owner.to }}",
            "dealChangesStage",
            "'changes.owner' is undefined: owner did not change",
            "wrap it in {% if changes.owner is defined %}",
            "changes.owner.to",
        ),
        (
            "{{ note.content }}",
            "dealChangesStage",
            "'note.content' cannot be read: note is null",
            "wrap it in {% if note %}",
            "note.content",
        ),
        (
            "{{ dael.name }}",
            "dealChangesStage",
            "'dael' is undefined",
            "did you mean deal?",
            "dael.name",
        ),
    ],
    ids=["typo", "unchanged", "null-snapshot", "variable-typo"],
)
def test_undefined_names_the_path(
    source: str, event_type: str, problem: str, fix: str, missing: str
) -> None:
    error = _fails(source, event_type)

    assert error.template == "params.title"
    assert (error.problem, error.fix, error.missing) == (problem, fix, missing)
    assert str(error) == f"params.title: {problem}; {fix}"


@pytest.mark.parametrize(
    ("source", "problem", "fix"),
    [
        (
            "{{ deal.name }",
            "syntax error: unexpected '}'",
            "check that every {{ has its }}",
        ),
        ("{{ deal.name | dat }}", "there is no filter 'dat'", "did you mean date?"),
        (
            "{% if deal.isWon %}won",
            "syntax error: Unexpected end of template",
            "check that every {{ has its }}",
        ),
        (
            "{{ deal.__class__ }}",
            "not allowed in a template: access to attribute '__class__'",
            "use only the variables",
        ),
        (
            "{{ deal.name | money }}",
            "'Nguyen - Refinance 12 Banksia St, Marrickville' is not an amount",
            "",
        ),
        (
            "{{ deal.name | date }}",
            "'Nguyen - Refinance 12 Banksia St, Marrickville' is not a date or time",
            "",
        ),
        ("{{ deal.name + 1 }}", "TypeError: can only concatenate str", ""),
        (
            "{{ deal.name * 10000 }}",
            "not allowed in a template: a value longer than 100000 is not allowed",
            "use only the variables",
        ),
        (
            "{{ 2 ** 100000 }}",
            "not allowed in a template: exponents above 64 are not allowed",
            "use only the variables",
        ),
        ("{{ range(1000000) }}", "OverflowError: Range too big", ""),
    ],
    ids=[
        "unclosed",
        "unknown-filter",
        "unclosed-block",
        "sandbox",
        "money-of-text",
        "date-of-text",
        "type-error",
        "huge-repeat",
        "huge-power",
        "huge-range",
    ],
)
def test_other_errors(source: str, problem: str, fix: str) -> None:
    error = _fails(source)

    assert error.problem.startswith(problem)
    assert error.fix.startswith(fix)


def test_html_escapes_values_but_not_the_template() -> None:
    context = {**sample_context("dealUpdated"), "name": "<b>Tom & Co</b>"}

    assert (
        render("<p>{{ name }}</p>", context, html=True)
        == "<p>&lt;b&gt;Tom &amp; Co&lt;/b&gt;</p>"
    )
    assert render("<p>{{ name }}</p>", context) == "<p><b>Tom & Co</b></p>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1744293600000, datetime(2025, 4, 11, tzinfo=SYDNEY)),
        (1744293600, datetime(2025, 4, 11, tzinfo=SYDNEY)),
        ("1744293600000", datetime(2025, 4, 11, tzinfo=SYDNEY)),
        ("2025-04-11", datetime(2025, 4, 11, tzinfo=SYDNEY)),
        ("2025-04-11T09:00", datetime(2025, 4, 11, 9, tzinfo=SYDNEY)),
        ("2025-04-10T23:00:00+00:00", datetime(2025, 4, 11, 9, tzinfo=SYDNEY)),
        (date(2025, 4, 11), datetime(2025, 4, 11, tzinfo=SYDNEY)),
        (
            datetime(2025, 4, 10, 23, tzinfo=UTC),
            datetime(2025, 4, 11, 9, tzinfo=SYDNEY),
        ),
        (None, None),
        ("", None),
    ],
    ids=[
        "ms",
        "seconds",
        "ms-text",
        "iso-date",
        "iso-local",
        "iso-utc",
        "date",
        "aware",
        "null",
        "empty",
    ],
)
def test_to_datetime(value: Any, expected: datetime | None) -> None:
    found = to_datetime(value, SYDNEY)

    assert found == expected
    if found is not None:
        assert found.utcoffset() == SYDNEY.utcoffset(found.replace(tzinfo=None))


@pytest.mark.parametrize(
    "value", ["next week", True, [2025]], ids=["words", "bool", "list"]
)
def test_to_datetime_refuses(value: Any) -> None:
    with pytest.raises(ValueError, match="not a date"):
        to_datetime(value, SYDNEY)


def test_references() -> None:
    source = (
        "{% set greeting = 'Hi' %}{{ greeting }} "
        "{{ contact.person.information.firstName }}"
        "{% for l in deal.labels %}{{ l.name }}{{ loop.index }}{% endfor %}"
        "{% if changes.owner is defined %}{{ changes.owner.to }}{% endif %}"
        "{{ deal['stage'].name }}{{ range(3) | list }}"
    )

    found = [(ref.text, ref.path, ref.guarded) for ref in template_references(source)]

    assert found == [
        (
            "contact.person.information.firstName",
            ("contact", "person", "information", "firstName"),
            False,
        ),
        ("deal.labels", ("deal", "labels"), False),
        ("l.name", ("deal", "labels", 0, "name"), False),
        ("changes.owner", ("changes", "owner"), True),
        ("changes.owner.to", ("changes", "owner", "to"), False),
        ("deal.stage.name", ("deal", "stage", "name"), False),
    ]


@pytest.mark.parametrize(
    ("source", "event_types", "problems"),
    [
        (
            "Hi {{ contact.person.information.firstName }}",
            ["dealUpdated", "contactCreated"],
            [],
        ),
        (
            "{% for l in deal.labels %}{{ l.nmae }}{% endfor %}",
            ["dealUpdated"],
            ["'l.nmae' is undefined"],
        ),
        (
            "{{ deal.nmae | default('x') }}",
            ["dealUpdated"],
            ["'deal.nmae' is undefined"],
        ),
        (
            "{{ note.content }}",
            ["noteCreated", "dealCreated"],
            [
                "'note.content' cannot be read: "
                "note is always null on dealCreated events"
            ],
        ),
        ("{{ deal.name.upper() }}{{ event.payload.idDeal }}", ["noteCreated"], []),
    ],
    ids=[
        "valid",
        "loop-typo",
        "typo-behind-default",
        "absent-on-one-event",
        "methods-and-payload",
    ],
)
def test_check_template(
    source: str, event_types: list[str], problems: list[str]
) -> None:
    found = check_template(source, event_types)

    assert [problem.problem for problem in found] == problems


def test_check_template_raises_on_syntax() -> None:
    with pytest.raises(TemplateError, match=r"^params.body: syntax error"):
        check_template("{{ oops", ["dealCreated"], name="params.body")
