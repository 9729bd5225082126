"""Schema drift: does a broker's tenant still serve what brokerhooks expects?

``compare`` sets the live schema (from introspection) against the bundled
one. It lists graphql-core's breaking and dangerous changes, and the bundled
operations that no longer validate against the live schema. An operation
that does not validate fails on every call, so events park until
brokerhooks is upgraded, unless it has a fallback that validates (see
``operations.FALLBACKS``): then the fallback is sent instead and the fields
it leaves out read as null. A breaking change elsewhere matters only once
an operation uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLSchema,
    find_breaking_changes,
    find_dangerous_changes,
    validate,
)

from brokerhooks.connectors.salestrekker.operations import (
    FALLBACKS,
    Operation,
    dropped_fields,
    operations,
)


@dataclass(frozen=True, slots=True)
class Change:
    """One difference between the schemas, as graphql-core names it."""

    kind: str
    description: str


@dataclass(frozen=True, slots=True)
class InvalidOperation:
    """A bundled operation the live schema rejects, with the reasons."""

    name: str
    errors: tuple[str, ...]
    # The fallback sent instead, when it validates, and the fields it drops.
    fallback: str | None = None
    null_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DriftReport:
    """What changed from the bundled schema to the live one."""

    breaking: list[Change] = field(default_factory=list)
    dangerous: list[Change] = field(default_factory=list)
    invalid_operations: list[InvalidOperation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing breaks: no breaking change, no failing operation."""
        return not self.breaking and not self.failing_operations

    @property
    def failing_operations(self) -> list[InvalidOperation]:
        """The invalid operations that no fallback stands in for."""
        return [op for op in self.invalid_operations if op.fallback is None]

    def render(self) -> str:
        """The report for people, one finding a line."""
        if self.ok and not self.dangerous:
            return (
                "The live SalesTrekker schema fits the bundled one: no breaking or "
                "dangerous change, and every operation validates."
            )
        lines = [
            f"{len(self.breaking)} breaking change(s), {len(self.dangerous)} "
            f"dangerous change(s), {len(self.invalid_operations)} operation(s) "
            "no longer valid."
        ]
        if self.failing_operations:
            lines += ["", "Operations the live schema rejects (these calls fail):"]
            for invalid in self.failing_operations:
                lines.append(f"  {invalid.name}")
                lines += [f"    - {error}" for error in invalid.errors]
        answered = [op for op in self.invalid_operations if op.fallback is not None]
        if answered:
            lines += [
                "",
                "Operations the live schema rejects, sent as their fallback "
                "instead (the fields it leaves out read as null):",
            ]
            for invalid in answered:
                lines.append(
                    f"  {invalid.name} -> {invalid.fallback} "
                    f"(null: {', '.join(invalid.null_fields)})"
                )
                lines += [f"    - {error}" for error in invalid.errors]
        for title, changes in (
            ("Breaking changes:", self.breaking),
            ("Dangerous changes:", self.dangerous),
        ):
            if changes:
                lines += ["", title]
                lines += [f"  - {c.kind}: {c.description}" for c in changes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "breaking": [_change_dict(change) for change in self.breaking],
            "dangerous": [_change_dict(change) for change in self.dangerous],
            "invalid_operations": [
                {
                    "name": invalid.name,
                    "errors": list(invalid.errors),
                    "fallback": invalid.fallback,
                    "null_fields": list(invalid.null_fields),
                }
                for invalid in self.invalid_operations
            ],
        }


def _change_dict(change: Change) -> dict[str, str]:
    return {"kind": change.kind, "description": change.description}


def compare(
    bundled: GraphQLSchema,
    live: GraphQLSchema,
    bundled_operations: dict[str, Operation] | None = None,
) -> DriftReport:
    """Changes from ``bundled`` to ``live``, and the operations ``live`` rejects.

    ``bundled_operations`` defaults to every operation the client ships.
    """
    checked = bundled_operations if bundled_operations is not None else operations()
    return DriftReport(
        breaking=[
            Change(change.type.name, change.description)
            for change in find_breaking_changes(bundled, live)
        ],
        dangerous=[
            Change(change.type.name, change.description)
            for change in find_dangerous_changes(bundled, live)
        ],
        invalid_operations=invalid_operations(live, checked),
    )


def invalid_operations(
    schema: GraphQLSchema, checked: dict[str, Operation]
) -> list[InvalidOperation]:
    """The operations that do not validate against ``schema``, by name."""
    found = []
    for name in sorted(checked):
        errors = validate(schema, checked[name].document)
        if not errors:
            continue
        messages = tuple(error.message for error in errors)
        fallback = FALLBACKS.get(name)
        if fallback in checked and not validate(schema, checked[fallback].document):
            found.append(
                InvalidOperation(name, messages, fallback, dropped_fields(name))
            )
        else:
            found.append(InvalidOperation(name, messages))
    return found
