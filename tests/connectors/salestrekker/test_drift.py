"""Schema drift between the bundled schema and a live one."""

from __future__ import annotations

import pytest
from graphql import build_schema, print_schema

from brokerhooks.connectors.salestrekker.drift import compare
from brokerhooks.connectors.salestrekker.operations import bundled_schema, schema_sdl
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from tests.connectors.salestrekker.conftest import ClientFactory


def test_identical_schemas_drift_nothing() -> None:
    report = compare(bundled_schema(), build_schema(schema_sdl()))

    assert report.ok
    assert (report.breaking, report.dangerous, report.invalid_operations) == (
        [],
        [],
        [],
    )
    assert "fits the bundled one" in report.render()


def test_removed_field_is_breaking_and_invalidates_its_operation() -> None:
    live = SalesTrekkerSimulator("k")
    live.remove_field("Ticket", "dueDate")

    report = compare(bundled_schema(), live.schema)

    assert not report.ok
    assert [(c.kind, c.description) for c in report.breaking] == [
        ("FIELD_REMOVED", "Field Ticket.dueDate was removed.")
    ]
    assert [invalid.name for invalid in report.invalid_operations] == ["Ticket"]
    # TicketSeen leaves the guessed fields out, so it answers for Ticket.
    [invalid] = report.invalid_operations
    assert invalid.fallback == "TicketSeen"
    assert "dueDate" in invalid.null_fields
    assert report.failing_operations == []
    rendered = report.render()
    assert "Ticket.dueDate was removed" in rendered
    assert "Cannot query field 'dueDate' on type 'Ticket'" in rendered
    assert "Ticket -> TicketSeen (null: dueDate, isWon" in rendered
    assert "these calls fail" not in rendered


def test_a_removed_field_the_fallback_needs_fails_both() -> None:
    live = SalesTrekkerSimulator("k")
    live.remove_field("Ticket", "idStage")

    report = compare(bundled_schema(), live.schema)

    assert [op.name for op in report.failing_operations] == ["Ticket", "TicketSeen"]
    assert "these calls fail" in report.render()
    assert report.as_dict()["invalid_operations"][0]["fallback"] is None


def test_removed_note_query_invalidates_note_only() -> None:
    live = SalesTrekkerSimulator("k")
    live.remove_field("Query", "note")

    report = compare(bundled_schema(), live.schema)

    assert [invalid.name for invalid in report.invalid_operations] == ["Note"]
    assert report.as_dict()["ok"] is False


def test_added_optional_argument_is_dangerous_not_breaking() -> None:
    sdl = print_schema(bundled_schema()).replace(
        "contacts: [Contact]", "contacts(limit: Int = 50): [Contact]"
    )

    report = compare(bundled_schema(), build_schema(sdl))

    assert report.ok
    assert [c.kind for c in report.dangerous] == ["OPTIONAL_ARG_ADDED"]
    assert "Dangerous changes:" in report.render()


def test_new_required_argument_breaks_the_operations_using_it() -> None:
    sdl = print_schema(bundled_schema()).replace(
        "labels: [Label]", "labels(idOrganization: ID!): [Label]"
    )

    report = compare(bundled_schema(), build_schema(sdl))

    assert [invalid.name for invalid in report.invalid_operations] == ["Labels"]
    assert [c.kind for c in report.breaking] == ["REQUIRED_ARG_ADDED"]


@pytest.mark.anyio
async def test_introspected_simulator_shows_the_drift(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    client = make_client()
    assert compare(bundled_schema(), await client.introspect()).ok

    simulator.remove_field("Ticket", "dueDate")
    report = compare(bundled_schema(), await client.introspect())

    assert [c.description for c in report.breaking] == [
        "Field Ticket.dueDate was removed."
    ]
    assert simulator.requests["IntrospectionQuery"] == 2
