"""The bundled schema and the operations the client sends, as package data.

Each operation lives in ``operations/<Name>.graphql`` and holds one
operation called ``<Name>``. Tests validate every one of them against
``schema.graphql``; ``brokerhooks salestrekker check`` validates them
against a broker's live schema.

An operation that selects guessed fields may have a fallback (``FALLBACKS``)
selecting only the fields the sources show: a tenant that lacks the
guessed ones is still read, and those fields read as null.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    parse,
)

PACKAGE = "brokerhooks.connectors.salestrekker"
SCHEMA_FILE = "schema.graphql"
OPERATIONS_FOLDER = "operations"


@dataclass(frozen=True, slots=True)
class Operation:
    """One GraphQL operation as sent: its name, text and parsed document."""

    name: str
    text: str
    document: DocumentNode


# Operation -> the one sent instead when the tenant rejects it.
FALLBACKS = {"Ticket": "TicketSeen"}


@cache
def schema_sdl() -> str:
    """The text of the bundled schema, comments included."""
    return resources.files(PACKAGE).joinpath(SCHEMA_FILE).read_text("utf-8")


@cache
def bundled_schema() -> GraphQLSchema:
    """The bundled schema, built once per process."""
    return build_schema(schema_sdl())


@cache
def operations() -> dict[str, Operation]:
    """Every bundled operation by name.

    Raises ValueError if a file does not hold exactly one operation named
    after the file: a packaging mistake, caught by the tests.
    """
    folder = resources.files(PACKAGE).joinpath(OPERATIONS_FOLDER)
    found: dict[str, Operation] = {}
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.name.endswith(".graphql"):
            operation = _read(entry.name.removesuffix(".graphql"), entry.read_text())
            found[operation.name] = operation
    return found


def operation(name: str) -> Operation:
    """The bundled operation called ``name``; KeyError if there is none."""
    return operations()[name]


@cache
def dropped_fields(name: str) -> tuple[str, ...]:
    """The top-level fields ``name`` selects and its fallback does not."""
    return tuple(
        field
        for field in _selected(operation(name))
        if field not in _selected(operation(FALLBACKS[name]))
    )


def _selected(chosen: Operation) -> list[str]:
    """The fields selected on the operation's one root field, in order."""
    [definition] = chosen.document.definitions
    assert isinstance(definition, OperationDefinitionNode)
    [root] = definition.selection_set.selections
    assert isinstance(root, FieldNode)
    assert root.selection_set is not None
    return [
        selection.name.value
        for selection in root.selection_set.selections
        if isinstance(selection, FieldNode)
    ]


def _read(name: str, text: str) -> Operation:
    document = parse(text)
    names = [
        definition.name.value if definition.name else None
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]
    if names != [name] or len(document.definitions) != 1:
        raise ValueError(
            f"{OPERATIONS_FOLDER}/{name}.graphql must hold one operation named "
            f"{name}, found {names}"
        )
    return Operation(name=name, text=text, document=document)
