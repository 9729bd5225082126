"""Helpers for the rules tests: rule files from YAML, and sample contexts."""

from __future__ import annotations

import textwrap

import yaml

from brokerhooks.rules.model import Rule


def rule_from(text: str) -> Rule:
    """A rule parsed from YAML, without the validator's deeper checks."""
    return Rule.model_validate(yaml.safe_load(textwrap.dedent(text)))


def rules_file(*rules: str) -> str:
    """A rule file holding ``rules``, each a YAML mapping without indentation."""
    items = []
    for rule in rules:
        lines = textwrap.dedent(rule).strip().splitlines()
        items.append(
            "\n".join(["  - " + lines[0], *("    " + line for line in lines[1:])])
        )
    return "rules:\n" + "\n".join(items) + "\n"
