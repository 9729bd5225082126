"""The rules engine: a pure library, with no database and no HTTP.

    model       a broker's rule file as typed data (RuleFile, Rule, steps)
    fields      the variables a rule sees, per event type, with samples
    conditions  CEL conditions: compile, check names, evaluate, explain
    templates   Jinja2 templates for step params, sandboxed and strict
    validate    validate_rules and load_rules: every problem, with its fix
    engine      evaluate(rule, context) -> RuleDecision, and describe()

docs/rules.md is the reference for people who write rules.
"""

from brokerhooks.rules.engine import (
    RuleDecision,
    StepDecision,
    Timing,
    describe,
    evaluate,
)
from brokerhooks.rules.errors import InvalidRules, RuleError, RulesError
from brokerhooks.rules.model import Rule, RuleFile
from brokerhooks.rules.validate import load_rules, validate_rules

__all__ = [
    "InvalidRules",
    "Rule",
    "RuleDecision",
    "RuleError",
    "RuleFile",
    "RulesError",
    "StepDecision",
    "Timing",
    "describe",
    "evaluate",
    "load_rules",
    "validate_rules",
]
