"""What can go wrong with a rule, for the code that saves and runs rules.

    BrokerhooksError
    └── RulesError
        ├── InvalidRules       a rule file failed validation; carries every RuleError
        ├── ConditionSyntaxError  a CEL condition does not parse
        └── TemplateError      a template does not parse or does not render

A condition that parses but fails while it is evaluated is not an exception:
it is a failed ``ConditionResult`` that the run's trace shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from brokerhooks.errors import BrokerhooksError


@dataclass(frozen=True, slots=True)
class RuleError:
    """One problem in a rule file: where it is, what is wrong, how to fix it.

    ``field`` is the path inside the rule (``condition``,
    ``actions[1].params.title``); ``line`` is the line in the YAML text when
    it is known.
    """

    rule: str | None
    step: str | None
    field: str
    problem: str
    fix: str
    source: str = ""
    line: int | None = None

    @property
    def step_field(self) -> str:
        """``field`` without its ``actions[i].`` prefix when the step is named."""
        if self.step is not None and self.field.startswith("actions["):
            _, _, rest = self.field.partition("].")
            return rest or self.field
        return self.field

    def __str__(self) -> str:
        where = []
        if self.rule is not None:
            where.append(f"rule {self.rule}")
        if self.step is not None:
            where.append(f"step {self.step}")
        where.append(self.step_field)
        return f"{', '.join(where)}: {self.problem}; {self.fix}"

    def located(self) -> str:
        """``str(self)`` after ``source:line:``, as a compiler would print it."""
        location = self.source or "<rules>"
        if self.line is not None:
            location += f":{self.line}"
        return f"{location}: {self}"


class RulesError(BrokerhooksError):
    """Base class of the errors of the rules engine."""


class InvalidRules(RulesError):
    """A rule file failed validation; ``errors`` lists every problem."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  {error.located()}" for error in self.errors)
        super().__init__(f"{len(self.errors)} problem(s) in the rules:\n{lines}")


class ConditionSyntaxError(RulesError):
    """A condition is not valid CEL."""

    def __init__(self, message: str, *, line: int | None, column: int | None) -> None:
        self.line = line
        self.column = column
        super().__init__(message)


class TemplateError(RulesError):
    """A template did not parse or render.

    ``template`` names it (``actions[0].params.title``); ``missing`` is the
    path that was undefined, when that was the cause; ``fix`` says what to
    change, when it can be told.
    """

    def __init__(
        self,
        template: str,
        problem: str,
        *,
        fix: str = "",
        missing: str | None = None,
    ) -> None:
        self.template = template
        self.problem = problem
        self.fix = fix
        self.missing = missing
        text = f"{template}: {problem}"
        super().__init__(f"{text}; {fix}" if fix else text)
