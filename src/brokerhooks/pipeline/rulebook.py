"""The broker's rules as the worker uses them, and how rule files are split.

A rule file holds several rules; each is stored on its own (so it can be
enabled, disabled or edited alone) as the YAML of its own mapping. The
worker parses stored rules once per version and keeps them in memory.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml
from sqlalchemy import Connection

from brokerhooks.rules.errors import InvalidRules, RuleError
from brokerhooks.rules.model import Rule
from brokerhooks.rules.validate import load_rules
from brokerhooks.store import rules as store
from brokerhooks.store.rules import StoredRule

# The widths of the rules table's columns.
MAX_RULE_ID = 100
MAX_RULE_NAME = 200


@dataclass(frozen=True, slots=True)
class RuleSource:
    rule_id: str
    name: str | None
    enabled: bool
    source: str


def save_rule_source(
    connection: Connection,
    broker_id: str,
    rule: RuleSource,
    *,
    enabled: bool | None = None,
) -> bool:
    """Store one rule of a split rule file; True if it was new.

    ``enabled`` overrides what the file says.
    """
    return store.save_rule(
        connection,
        broker_id,
        rule_id=rule.rule_id,
        name=rule.name,
        source=rule.source,
        enabled=rule.enabled if enabled is None else enabled,
    )


def split_rule_file(
    text: str, *, source_name: str, connections: Collection[str] | None = None
) -> list[RuleSource]:
    """Check a rule file and split it into one YAML text per rule.

    Raises ``InvalidRules`` with every problem found.
    """
    rule_file = load_rules(text, source_name=source_name, connections=connections)
    _check_storable(rule_file.rules, source_name)
    document = yaml.safe_load(text) or {}
    mappings: list[dict[str, Any]] = document.get("rules") or []
    return [
        RuleSource(
            rule_id=rule.id,
            name=rule.name,
            enabled=rule.enabled,
            source=yaml.safe_dump(
                {**mapping, "id": rule.id}, sort_keys=False, allow_unicode=True
            ),
        )
        for rule, mapping in zip(rule_file.rules, mappings, strict=True)
    ]


def _check_storable(rules: tuple[Rule, ...], source_name: str) -> None:
    """Ids and names must fit the store (and hold no NUL, which PostgreSQL refuses).

    A step's ledger key is ``<event id>:<rule id>:<step id>``: at most 238
    characters with these limits.
    """
    errors = []
    for rule in rules:
        if len(rule.id) > MAX_RULE_ID:
            errors.append(
                RuleError(
                    rule.id[:40] + "...",
                    None,
                    "id",
                    f"the id has {len(rule.id)} characters",
                    f"use at most {MAX_RULE_ID}",
                    source=source_name,
                )
            )
        for step in rule.actions:
            if len(step.id) > MAX_RULE_ID:
                errors.append(
                    RuleError(
                        rule.id,
                        step.id[:40] + "...",
                        "id",
                        f"the step id has {len(step.id)} characters",
                        f"use at most {MAX_RULE_ID}",
                        source=source_name,
                    )
                )
        name = rule.name or ""
        if len(name) > MAX_RULE_NAME or "\0" in name:
            errors.append(
                RuleError(
                    rule.id,
                    None,
                    "name",
                    "the name is too long or holds a NUL character",
                    f"use at most {MAX_RULE_NAME} printable characters",
                    source=source_name,
                )
            )
    if errors:
        raise InvalidRules(errors)


def parse_stored(stored: StoredRule) -> Rule:
    """A stored rule, parsed; its ``enabled`` comes from the store."""
    document = {"rules": [yaml.safe_load(stored.source)]}
    rule = load_rules(document, source_name=f"rule {stored.rule_id}").rules[0]
    return rule.model_copy(update={"enabled": stored.enabled})


class RuleBook:
    """Parsed rules per broker, re-parsed only when a rule changes."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[str, str], tuple[datetime, Rule]] = {}

    def rules(self, connection: Connection, broker_id: str) -> list[Rule]:
        parsed = []
        for stored in store.list_rules(connection, broker_id):
            cached = self._parsed.get((broker_id, stored.rule_id))
            if cached is None or cached[0] != stored.updated_at:
                cached = (stored.updated_at, parse_stored(stored))
                self._parsed[(broker_id, stored.rule_id)] = cached
            parsed.append(cached[1])
        return parsed

    def triggered_by(
        self, connection: Connection, broker_id: str, event_type: str
    ) -> list[Rule]:
        return [
            rule
            for rule in self.rules(connection, broker_id)
            if rule.enabled and event_type in rule.trigger
        ]
