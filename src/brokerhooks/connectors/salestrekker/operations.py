"""The bundled schema and the operations the client sends, as package data.

Each operation lives in ``operations/<Name>.graphql`` and holds one
operation called ``<Name>``. Tests validate every one of them against
``schema.graphql``; ``brokerhooks salestrekker check`` validates them
against a broker's live schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from graphql import (
    DocumentNode,
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
