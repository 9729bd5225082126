"""docs/rules.md: its rule files validate and its conditions are sound CEL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from brokerhooks.rules.conditions import (
    check_condition,
    compile_condition,
    evaluate_condition,
)
from brokerhooks.rules.fields import sample_context
from brokerhooks.rules.validate import validate_rules

DOCS = Path(__file__).parents[2] / "docs" / "rules.md"


def _blocks(language: str) -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _rule_files() -> list[str]:
    return [block for block in _blocks("yaml") if block.startswith("rules:")]


def _conditions() -> list[str]:
    """The CEL in the docs' text blocks.

    A paragraph under a ``//`` comment is one expression, possibly over
    several lines; elsewhere each line is one, followed by a remark after
    two spaces.
    """
    snippets: list[str] = []
    for block in _blocks("text"):
        if "->" in block or "rules.yaml" in block:
            continue  # traces and messages, not expressions
        for paragraph in block.split("\n\n"):
            lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
            code = [re.sub(r"\s{2,}.*$", "", line) for line in lines]
            if lines and lines[0].startswith("//"):
                snippets.append(
                    " ".join(line for line in code if not line.startswith("//"))
                )
            else:
                snippets.extend(code)
    return snippets


def test_there_are_examples() -> None:
    assert len(_rule_files()) >= 9
    assert len(_conditions()) >= 10


@pytest.mark.parametrize("text", _rule_files())
def test_rule_files_validate(text: str) -> None:
    assert [str(error) for error in validate_rules(text)] == []


@pytest.mark.parametrize("source", _conditions())
def test_conditions_are_sound(source: str) -> None:
    """Each names real fields of deal or note events, and evaluates there."""
    condition = compile_condition(source)

    checked = {
        event: check_condition(condition, [event])
        for event in ("dealUpdated", "noteCreated")
    }
    event = next(event for event, problems in checked.items() if not problems)
    result = evaluate_condition(condition, sample_context(event, all_changes=True))
    assert result.error is None
