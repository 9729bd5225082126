"""The bundled schema and operations: packaged, parseable, mutually valid."""

from __future__ import annotations

from importlib import resources

import pytest
from graphql import OperationDefinitionNode, OperationType, validate

from brokerhooks.connectors.salestrekker.operations import (
    FALLBACKS,
    PACKAGE,
    bundled_schema,
    dropped_fields,
    operation,
    operations,
    schema_sdl,
)

EXPECTED = {
    "Authenticate": OperationType.MUTATION,
    "Contact": OperationType.QUERY,
    "Labels": OperationType.QUERY,
    "Note": OperationType.QUERY,
    "NoteCreate": OperationType.MUTATION,
    "Ticket": OperationType.QUERY,
    "TicketSeen": OperationType.QUERY,
    "Workflow": OperationType.QUERY,
}


def test_every_operation_the_client_sends_is_bundled() -> None:
    kinds = {
        name: definition.operation
        for name, op in operations().items()
        for definition in op.document.definitions
        if isinstance(definition, OperationDefinitionNode)
    }

    assert kinds == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_operation_validates_against_the_bundled_schema(name: str) -> None:
    assert validate(bundled_schema(), operation(name).document) == []


def test_ticket_seen_is_ticket_less_its_guessed_fields() -> None:
    """The fallback drops exactly the fields the schema marks as guesses."""
    guessed = {
        line.split(":")[0].strip()
        for line in schema_sdl()
        .split("extend type Ticket {")[1]
        .split("}")[0]
        .splitlines()
        if "GUESS" in line
    }

    assert FALLBACKS == {"Ticket": "TicketSeen"}
    assert set(dropped_fields("Ticket")) == guessed
    assert len(guessed) == 5


def test_files_ship_as_package_data() -> None:
    folder = resources.files(PACKAGE)

    assert folder.joinpath("schema.graphql").is_file()
    for name in EXPECTED:
        assert folder.joinpath("operations", f"{name}.graphql").is_file()


def test_schema_keeps_the_evidence_marks_of_the_reference() -> None:
    sdl = schema_sdl()

    assert "ticket(id: ID!): Ticket                       # S1,S7 seen" in sdl
    assert "note(id: ID!): Note            # GUESS" in sdl
    assert sdl.count("GUESS") > 40


def test_due_date_is_settable_as_a_marked_guess() -> None:
    ticket_input = bundled_schema().type_map["TicketInput"]
    sdl = schema_sdl()
    addition = sdl[sdl.index("extend input TicketInput") :]

    assert "dueDate" in ticket_input.fields  # type: ignore[attr-defined]
    assert "# GUESS" in addition


def test_ticket_selects_the_fields_enrichment_reads() -> None:
    text = operation("Ticket").text

    for field in (
        "idOwner",
        "idWorkflow",
        "idStage",
        "idClients",
        "idLabels",
        "onceOff",
        "idContact",
        "dueDate",
        "isWon",
        "isSettled",
        "timeStamp",
    ):
        assert field in text


def test_a_file_with_the_wrong_operation_name_is_refused() -> None:
    from brokerhooks.connectors.salestrekker.operations import _read

    with pytest.raises(ValueError, match="one operation named Ticket"):
        _read("Ticket", "query Deal { labels { id } }")
