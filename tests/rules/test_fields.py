"""The variables table: its samples match it, and paths are checked by it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

from brokerhooks.ingest.salestrekker_events import EVENT_SUBJECTS
from brokerhooks.rules import fields
from brokerhooks.rules.fields import (
    EVENT_TYPES,
    VARIABLES,
    Field,
    FieldType,
    check_path,
    closest,
    date_fields,
    field_at,
    resolve,
    sample_context,
    variables,
)

DEAL_EVENT = ["dealChangesStage"]


_PYTHON_TYPES: dict[FieldType, type | tuple[type, ...]] = {
    FieldType.STRING: str,
    FieldType.ID: str,
    FieldType.NUMBER: (int, float),
    FieldType.BOOLEAN: bool,
    FieldType.EPOCH_MS: int,
    FieldType.TIMESTAMP: datetime,
    FieldType.LIST: list,
    FieldType.OBJECT: dict,
}


def _conforms(value: Any, schema: Field, path: str) -> list[str]:
    """Where ``value`` does not match ``schema``, as readable complaints."""
    if value is None:
        return [] if schema.nullable or schema.type is FieldType.ABSENT else [path]
    if schema.type is FieldType.ANY:
        return []
    if not _is(value, schema.type):
        return [f"{path}: {type(value).__name__} is not {schema.type}"]
    if isinstance(value, list):
        assert schema.item is not None
        return [
            complaint
            for index, item in enumerate(value)
            for complaint in _conforms(item, schema.item, f"{path}[{index}]")
        ]
    if isinstance(value, dict):
        return _conforms_object(value, schema, path)
    return []


def _is(value: Any, kind: FieldType) -> bool:
    return isinstance(value, _PYTHON_TYPES[kind])


def _conforms_object(value: dict[str, Any], schema: Field, path: str) -> list[str]:
    complaints = [
        f"{path}.{key}: not in the table" for key in value if key not in schema.fields
    ]
    # `changes` holds only what changed; every other object is complete.
    partial = path == "changes"
    for key, child in schema.fields.items():
        if key in value:
            complaints += _conforms(value[key], child, f"{path}.{key}")
        elif not partial:
            complaints.append(f"{path}.{key}: missing from the sample")
    return complaints


@pytest.mark.parametrize("all_changes", [False, True], ids=["typical", "all-changes"])
@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_samples_match_the_table(event_type: str, all_changes: bool) -> None:
    context = sample_context(event_type, all_changes=all_changes)
    table = variables(event_type)

    assert set(context) == set(VARIABLES) == set(table)
    complaints = [
        complaint
        for name in VARIABLES
        for complaint in _conforms(context[name], table[name], name)
    ]
    assert complaints == []


@pytest.mark.parametrize("event_type", ["dealCreated", "contactCreated", "noteCreated"])
def test_a_first_snapshot_has_no_previous_and_no_changes(event_type: str) -> None:
    context = sample_context(event_type)

    assert context["previous"] is None
    assert context["changes"] == {}


@pytest.mark.parametrize(
    ("event_type", "changed"),
    [
        ("dealChangesStage", {"stage"}),
        ("dealChangesDueDate", {"due_date"}),
        ("dealChangesOwner", {"owner"}),
        ("contactUpdated", {"email", "phone"}),
        ("noteUpdated", {"content"}),
    ],
    ids=["stage", "due-date", "owner", "contact", "note"],
)
def test_typical_changes_agree_with_previous(
    event_type: str, changed: set[str]
) -> None:
    context = sample_context(event_type)

    assert set(context["changes"]) == changed
    assert context["previous"] != context[EVENT_SUBJECTS[event_type]]


def test_samples_are_fresh_copies() -> None:
    first = sample_context("dealChangesStage")
    first["deal"]["name"] = "changed"

    assert sample_context("dealChangesStage")["deal"]["name"] != "changed"


@pytest.mark.parametrize(
    ("subject", "event_type", "present", "nullable", "absent"),
    [
        ("deal", "dealUpdated", "deal", "contact", "note"),
        ("note", "noteCreated", "note", "deal", "contact"),
        ("contact", "contactUpdated", "contact", None, "deal"),
    ],
    ids=["deal", "note", "contact"],
)
def test_which_snapshots_each_subject_sees(
    subject: str, event_type: str, present: str, nullable: str | None, absent: str
) -> None:
    table = variables(event_type)

    assert table[present].type is FieldType.OBJECT
    assert not table[present].nullable
    assert table["previous"].nullable
    if nullable is not None:
        assert table[nullable].nullable
    assert table[absent].type is FieldType.ABSENT


def test_change_names_match_the_pipeline() -> None:
    """The pipeline computes exactly the changes this table describes."""
    changes = pytest.importorskip("brokerhooks.pipeline.changes")

    for subject, schema in fields.CHANGES.items():
        assert set(schema.fields) == set(changes.FIELDS[subject]), subject


@pytest.mark.parametrize(
    ("path", "event_types", "problem", "fix"),
    [
        (
            ("deal", "nmae"),
            DEAL_EVENT,
            "'deal.nmae' is undefined",
            "did you mean deal.name?",
        ),
        (
            ("deal", "duedate"),
            DEAL_EVENT,
            "'deal.duedate' is undefined",
            "did you mean deal.dueDate?",
        ),
        (
            ("changes", "stge"),
            DEAL_EVENT,
            "'changes.stge' is undefined",
            "did you mean changes.stage?",
        ),
        (("dael",), DEAL_EVENT, "'dael' is undefined", "did you mean deal?"),
        (("xyz",), DEAL_EVENT, "'xyz' is undefined", "the variables are: event, deal"),
        (
            ("note", "content"),
            DEAL_EVENT,
            "note is always null on dealChangesStage events",
            "noteCreated, noteUpdated",
        ),
        (
            ("deal", "name", "first"),
            DEAL_EVENT,
            "deal.name is a string",
            "remove .first",
        ),
        (
            ("deal", "values", 0),
            DEAL_EVENT,
            "deal.values is a object, not a list",
            "remove [0]",
        ),
        (
            ("changes", "stage"),
            ["dealChangesStage", "noteCreated"],
            "'changes.stage' is undefined on noteCreated events",
            "content",
        ),
    ],
    ids=[
        "typo",
        "case",
        "change-typo",
        "variable-typo",
        "unknown-variable",
        "absent-snapshot",
        "field-of-text",
        "index-of-object",
        "some-events-only",
    ],
)
def test_check_path_problems(
    path: tuple[str | int, ...], event_types: list[str], problem: str, fix: str
) -> None:
    found = check_path(path, event_types)

    assert found is not None
    assert problem in found.problem
    assert fix in found.fix


@pytest.mark.parametrize(
    "path",
    [
        ("deal", "stage", "name"),
        ("deal", "labels", 0, "name"),
        ("changes", "due_date", "to"),
        ("event", "payload", "anything", "below"),
        ("contact", "person", "contact", "email"),
        ("note",),
        ("now",),
    ],
    ids=["nested", "list-item", "change", "free-form", "related", "null-itself", "now"],
)
def test_check_path_accepts(path: tuple[str | int, ...]) -> None:
    assert check_path(path, DEAL_EVENT) is None


def test_check_path_quotes_what_was_written() -> None:
    found = check_path(("deal", "labels", 0, "nmae"), DEAL_EVENT, written=("l", "nmae"))

    assert found is not None
    assert found.problem == "'l.nmae' is undefined"
    assert found.fix == "did you mean l.name?"


@pytest.mark.parametrize(
    ("path", "missing", "fix"),
    [
        (
            ("changes", "owner", "to"),
            "'changes.owner' is undefined: owner did not change",
            "has(changes.owner)",
        ),
        (
            ("changes", "stge"),
            "'changes.stge' is undefined",
            "did you mean changes.stage?",
        ),
        (("deal", "nmae"), "'deal.nmae' is undefined", "did you mean deal.name?"),
        (
            ("note", "content"),
            "'note.content' cannot be read: note is null",
            "note != null",
        ),
        (("deal", "labels", 5), "deal.labels has no item 5", "size(deal.labels)"),
    ],
    ids=["unchanged", "unknown-change", "typo", "null", "index"],
)
def test_resolve_explains_a_miss(
    path: tuple[str | int, ...], missing: str, fix: str
) -> None:
    found = resolve(path, sample_context("dealChangesStage"))

    assert found.missing is not None
    assert missing in found.missing
    assert fix in found.fix


def test_resolve_finds_values() -> None:
    context: Mapping[str, Any] = sample_context("dealChangesStage")

    assert resolve(("changes", "stage", "to", "name"), context).value == "6. Approved"
    assert resolve(("deal", "labels", 0, "name"), context).value == "Refinance"


def test_resolve_fix_speaks_jinja_when_asked() -> None:
    found = resolve(
        ("changes", "owner"), sample_context("dealUpdated"), language="jinja"
    )

    assert found.fix == "wrap it in {% if changes.owner is defined %}"


def test_date_fields_and_field_at() -> None:
    dates = date_fields("dealChangesStage")

    assert {"deal.dueDate", "changes.due_date.to", "now", "event.received_at"} <= set(
        dates
    )
    assert "note.timeStamp" not in dates
    found = field_at(("deal", "dueDate"), "dealChangesStage")
    assert found is not None
    assert found.is_date
    assert field_at(("deal", "nope"), "dealChangesStage") is None


@pytest.mark.parametrize(
    ("word", "expected"),
    [("DUEDATE", "dueDate"), ("nmae", "name"), ("zzzz", None)],
    ids=["case", "typo", "nothing-close"],
)
def test_closest(word: str, expected: str | None) -> None:
    assert closest(word, ["name", "dueDate", "stage"]) == expected
