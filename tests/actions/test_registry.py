"""The registry: every kind of the rule model, and the guarantees they state."""

from __future__ import annotations

from pathlib import Path

import pytest

from brokerhooks.actions.registry import (
    KINDS,
    UnknownActionKind,
    get_kind,
    guarantee_table,
    guarantees,
)
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.rules import model

RULES_DOC = Path(__file__).parents[2] / "docs" / "rules.md"


def test_every_kind_a_rule_can_name_has_an_action() -> None:
    assert set(KINDS) == set(model.KINDS)
    for name, kind in KINDS.items():
        assert kind.name == name
        assert get_kind(name) is kind


def test_an_unknown_kind_is_a_permanent_error_naming_the_kinds() -> None:
    with pytest.raises(
        UnknownActionKind, match="'fax' is not an action kind"
    ) as raised:
        get_kind("fax")

    assert isinstance(raised.value, PermanentError)
    assert "todo_task, send_mail" in str(raised.value)


def test_each_guarantee_is_exactly_once_or_says_why_not() -> None:
    stated = guarantees()

    at_least_once = {
        name for name, text in stated.items() if text.startswith("at-least-once: ")
    }
    assert at_least_once == {"salestrekker_note", "http_request"}
    assert {stated[name] for name in set(stated) - at_least_once} == {"exactly-once"}


def test_the_rules_doc_shows_the_guarantees_table() -> None:
    """docs/rules.md ends with ``guarantee_table()``; regenerate it if this fails."""
    text = RULES_DOC.read_text()

    section = text[text.index("## What each action guarantees") :]
    assert guarantee_table() in section
    for name, stated in guarantees().items():
        assert stated.removeprefix("at-least-once: ") in section, name
