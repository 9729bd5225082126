"""Rules: the list, the editor with its errors, back-tests and recipes.

The editor holds a rule file (``rules:`` and a list), so that the line a
validation error names is the line of the text area. A stored rule is shown
as a file of that one rule.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import Connection
from starlette.responses import Response

from brokerhooks.console.web import Page
from brokerhooks.errors import NotFound
from brokerhooks.pipeline.backtest import BacktestReport, backtest
from brokerhooks.pipeline.decide import Verdict
from brokerhooks.pipeline.rulebook import RuleSource, save_rule_source, split_rule_file
from brokerhooks.rules.engine import StepDecision
from brokerhooks.rules.errors import InvalidRules, RuleError
from brokerhooks.rules.model import Rule
from brokerhooks.rules.recipes import RECIPES, Recipe
from brokerhooks.rules.validate import load_rules
from brokerhooks.store import rules as store
from brokerhooks.store.brokers import get_broker_by_id
from brokerhooks.store.connections import list_m365_connections
from brokerhooks.store.types import utcnow

PERIODS = {"1d": "the last day", "7d": "the last 7 days", "30d": "the last 30 days"}
PERIODS["90d"] = "the last 90 days"
BACKTEST_LIMIT = 1000
SOURCE_NAME = "rules"

NEW_RULE = """\
rules:
  - id: approved-note
    name: Note on the deal when it is approved
    trigger: dealChangesStage
    condition: has(changes.stage) && changes.stage.to.name == "6. Approved"
    actions:
      - id: note
        kind: salestrekker_note
        params:
          content: "Approved on {{ now | date }}"
"""


@dataclass(frozen=True, slots=True)
class Problem:
    """One error of the editor, where it is and what to do."""

    line: int | None
    rule: str | None
    step: str | None
    field: str
    problem: str
    fix: str

    @classmethod
    def of(cls, error: RuleError) -> Problem:
        return cls(
            error.line,
            error.rule,
            error.step,
            error.step_field,
            error.problem,
            error.fix,
        )

    @property
    def anchor(self) -> str:
        return f"line-{self.line}" if self.line else ""


@dataclass(frozen=True, slots=True)
class Line:
    number: int
    text: str
    problems: list[Problem]


@dataclass
class Editor:
    """What the editor page shows: the text, its problems, a back-test."""

    text: str
    problems: list[Problem] = field(default_factory=list)
    period: str = "30d"
    show_all: bool = False
    report: list[dict[str, Any]] | None = None
    summary: str | None = None

    @property
    def lines(self) -> list[Line]:
        """The text's lines, each with the problems found on it."""
        return [
            Line(
                number,
                text,
                [problem for problem in self.problems if problem.line == number],
            )
            for number, text in enumerate(self.text.splitlines(), start=1)
        ]

    @property
    def unplaced(self) -> list[Problem]:
        count = len(self.text.splitlines())
        return [p for p in self.problems if not p.line or p.line > count]


def as_file(source: str) -> str:
    """A stored rule (the YAML of its mapping) as a rule file of one rule."""
    lines = source.rstrip("\n").splitlines()
    indented = [
        "  - " + lines[0],
        *("    " + line if line else "" for line in lines[1:]),
    ]
    return "rules:\n" + "\n".join(indented) + "\n"


def _connections(connection: Connection, broker_id: str) -> list[str]:
    return [c.name for c in list_m365_connections(connection, broker_id=broker_id)]


def _form_text(page: Page) -> str:
    return page.form.get("source").replace("\r\n", "\n")


# The list.


async def rules_list(page: Page) -> Response:
    broker_id = page.require_broker()
    stored = await page.read(lambda connection: store.list_rules(connection, broker_id))
    rows = [(rule, _trigger(rule.source)) for rule in stored]
    return page.render("rules.html", section="rules", rows=rows)


def _trigger(source: str) -> str:
    try:
        trigger = (yaml.safe_load(source) or {}).get("trigger")
    except yaml.YAMLError:
        return ""
    if isinstance(trigger, list):
        return ", ".join(str(item) for item in trigger)
    return str(trigger or "")


async def set_enabled(page: Page) -> Response:
    broker_id = page.require_broker()
    rule_id = page.request.path_params["rule_id"]
    enabled = page.request.url.path.endswith("/enable")
    await page.write(
        lambda connection: store.set_enabled(connection, broker_id, rule_id, enabled)
    )
    return page.redirect(
        "/rules", "rule-enabled" if enabled else "rule-disabled", rule=rule_id
    )


async def delete_form(page: Page) -> Response:
    broker_id = page.require_broker()
    rule_id = page.request.path_params["rule_id"]
    rule = await page.read(
        lambda connection: store.get_rule(connection, broker_id, rule_id)
    )
    return page.render("rule_delete.html", section="rules", rule=rule)


async def delete(page: Page) -> Response:
    broker_id = page.require_broker()
    rule_id = page.request.path_params["rule_id"]
    await page.write(
        lambda connection: store.delete_rule(connection, broker_id, rule_id)
    )
    return page.redirect("/rules", "rule-deleted", rule=rule_id)


# The editor.


async def new_rule(page: Page) -> Response:
    page.require_broker()
    return _editor(page, Editor(NEW_RULE), rule=None)


async def edit_rule(page: Page) -> Response:
    broker_id = page.require_broker()
    rule_id = page.request.path_params["rule_id"]
    rule = await page.read(
        lambda connection: store.get_rule(connection, broker_id, rule_id)
    )
    return _editor(page, Editor(as_file(rule.source)), rule=rule)


def _editor(
    page: Page, editor: Editor, *, rule: store.StoredRule | None, status: int = 200
) -> Response:
    return page.render(
        "rule_edit.html",
        status=status,
        section="rules",
        editor=editor,
        rule=rule,
        periods=PERIODS,
    )


async def save_new_rule(page: Page) -> Response:
    """Save every rule of the text (none may exist yet), or back-test them."""
    broker_id = page.require_broker()
    editor = _editor_from_form(page)
    if page.form.get("action") == "backtest":
        return await _backtest(page, broker_id, editor, rule=None)

    def save(connection: Connection) -> list[RuleSource]:
        sources = _split(connection, broker_id, editor)
        existing = {rule.rule_id for rule in store.list_rules(connection, broker_id)}
        for source in sources:
            if source.rule_id in existing:
                raise _Refused(
                    editor,
                    Problem(
                        _line_of_id(editor.text, source.rule_id),
                        source.rule_id,
                        None,
                        "id",
                        f"a rule with the id {source.rule_id!r} already exists",
                        "give the new rule another id, or edit the existing rule",
                    ),
                )
        for source in sources:
            _store(connection, broker_id, source, enabled=source.enabled)
        return sources

    try:
        sources = await page.write(save)
    except _Refused as refused:
        return _editor(page, refused.editor, rule=None, status=400)
    if len(sources) == 1:
        return page.redirect(
            f"/rules/{sources[0].rule_id}", "rule-saved", rule=sources[0].rule_id
        )
    return page.redirect("/rules", "rules-saved", count=len(sources))


async def save_rule(page: Page) -> Response:
    """Save the edited rule (its id stays), or back-test the text."""
    broker_id = page.require_broker()
    rule_id = page.request.path_params["rule_id"]
    rule = await page.read(
        lambda connection: store.get_rule(connection, broker_id, rule_id)
    )
    editor = _editor_from_form(page)
    if page.form.get("action") == "backtest":
        return await _backtest(page, broker_id, editor, rule=rule)

    def save(connection: Connection) -> None:
        sources = _split(connection, broker_id, editor)
        if len(sources) != 1 or sources[0].rule_id != rule_id:
            raise _Refused(
                editor,
                Problem(
                    _line_of_id(editor.text, sources[-1].rule_id),
                    sources[-1].rule_id,
                    None,
                    "id",
                    f"this page edits the one rule {rule_id!r}",
                    f"keep exactly one rule with the id {rule_id}; add other rules "
                    "with New rule",
                ),
            )
        # The list's enable switch wins unless the text says `enabled:`.
        explicit = "enabled" in (yaml.safe_load(sources[0].source) or {})
        enabled = sources[0].enabled if explicit else rule.enabled
        _store(connection, broker_id, sources[0], enabled=enabled)

    try:
        await page.write(save)
    except _Refused as refused:
        return _editor(page, refused.editor, rule=rule, status=400)
    return page.redirect(f"/rules/{rule_id}", "rule-saved", rule=rule_id)


class _Refused(Exception):
    """The text cannot be saved; the editor says why."""

    def __init__(self, editor: Editor, *problems: Problem) -> None:
        super().__init__("refused")
        editor.problems.extend(problems)
        self.editor = editor


def _editor_from_form(page: Page) -> Editor:
    period = page.form.get("period")
    return Editor(
        text=_form_text(page),
        period=period if period in PERIODS else "30d",
        show_all=page.form.get("show_all") == "on",
    )


def _split(connection: Connection, broker_id: str, editor: Editor) -> list[RuleSource]:
    """The text's rules; _Refused with every problem if it is not valid."""
    if not editor.text.strip():
        raise _Refused(
            editor,
            Problem(None, None, None, "rules", "the text is empty", "write a rule"),
        )
    try:
        sources = split_rule_file(
            editor.text,
            source_name=SOURCE_NAME,
            connections=_connections(connection, broker_id),
        )
    except InvalidRules as invalid:
        raise _Refused(
            editor, *(Problem.of(error) for error in invalid.errors)
        ) from None
    if not sources:
        raise _Refused(
            editor,
            Problem(None, None, None, "rules", "there is no rule", "write a rule"),
        )
    return sources


def _store(
    connection: Connection, broker_id: str, source: RuleSource, *, enabled: bool
) -> None:
    save_rule_source(connection, broker_id, source, enabled=enabled)


def _line_of_id(text: str, rule_id: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip().removeprefix("-").strip()
        if stripped.startswith("id:") and rule_id in stripped:
            return number
    return None


# Back-tests.


async def _backtest(
    page: Page, broker_id: str, editor: Editor, *, rule: store.StoredRule | None
) -> Response:
    """The editor with a table of what its rules would have done."""
    since = utcnow() - timedelta(days=int(editor.period.removesuffix("d")))

    def run(connection: Connection) -> BacktestReport:
        try:
            rule_file = load_rules(
                editor.text,
                source_name=SOURCE_NAME,
                connections=_connections(connection, broker_id),
            )
        except InvalidRules as invalid:
            raise _Refused(
                editor, *(Problem.of(error) for error in invalid.errors)
            ) from None
        # A back-test asks what the rules would do: disabled ones too.
        rules = [rule.model_copy(update={"enabled": True}) for rule in rule_file.rules]
        return backtest(
            connection,
            get_broker_by_id(connection, broker_id),
            rules,
            since=since,
            limit=BACKTEST_LIMIT,
            timezone=page.settings.timezone,
        )

    try:
        report = await page.read(run)
    except _Refused as refused:
        return _editor(page, refused.editor, rule=rule, status=400)
    editor.report = [
        {
            "event": entry.event,
            "verdicts": [_verdict(verdict) for verdict in entry.verdicts],
        }
        for entry in report.entries
        if entry.verdicts and (entry.fired or editor.show_all)
    ]
    tested = f"{len(report.entries)} processed event(s) in {PERIODS[editor.period]}"
    if len(report.entries) >= BACKTEST_LIMIT:
        tested = (
            f"the oldest {BACKTEST_LIMIT} processed events of {PERIODS[editor.period]}"
        )
    editor.summary = (
        f"Tested {tested}; the rules fired {report.fired} time(s). "
        "Nothing was performed."
    )
    return _editor(page, editor, rule=rule)


def _verdict(verdict: Verdict) -> dict[str, Any]:
    decision = verdict.decision
    if decision is None:
        return {"rule": verdict.rule_id, "outcome": "error", "lines": [verdict.error]}
    lines = decision.condition.explain() if decision.condition else []
    return {
        "rule": verdict.rule_id,
        "outcome": decision.outcome.replace("_", " "),
        "lines": lines if not decision.fired else [],
        "steps": [_step(step) for step in decision.steps],
    }


def _step(step: StepDecision) -> dict[str, Any]:
    timing = step.timing
    if timing.when == "later" and timing.at is not None:
        when: str = f"at {timing.at:%Y-%m-%d %H:%M %z}"
    elif timing.when == "skip":
        when = f"skipped: {timing.reason}"
    else:
        when = "now"
    return {
        "id": step.step_id,
        "kind": step.kind,
        "connection": step.connection,
        "when": when,
        "error": step.error,
        "params": [
            (key, short(value))
            for key, value in (step.params or {}).items()
            if value is not None
        ],
    }


def short(value: Any, limit: int = 120) -> str:
    """A value on one line, cut at ``limit`` characters."""
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M %z")
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Recipes.


async def recipes(page: Page) -> Response:
    page.require_broker()
    return page.render("recipes.html", section="rules", recipes=RECIPES.values())


def _recipe(page: Page) -> Recipe:
    recipe = RECIPES.get(page.request.path_params["recipe_id"])
    if recipe is None:
        raise NotFound("no such recipe")
    return recipe


async def recipe_form(page: Page) -> Response:
    page.require_broker()
    recipe = _recipe(page)
    values = {param.name: param.default or "" for param in recipe.params}
    return _recipe_page(page, recipe, values)


def _recipe_page(
    page: Page,
    recipe: Recipe,
    values: Mapping[str, str],
    *,
    editor: Editor | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    return page.render(
        "recipe.html",
        status=status,
        section="rules",
        recipe=recipe,
        values=values,
        editor=editor,
        problem=problem,
    )


async def add_recipe(page: Page) -> Response:
    """Fill the recipe, check the rule and save it."""
    broker_id = page.require_broker()
    recipe = _recipe(page)
    values = {param.name: page.form.get(param.name).strip() for param in recipe.params}
    missing = [param for param in recipe.params if not values[param.name]]
    if missing:
        return _recipe_page(
            page,
            recipe,
            values,
            problem=f"Fill in {missing[0].name}: {missing[0].description}.",
            status=400,
        )
    editor = Editor(recipe.render(values))

    def save(connection: Connection) -> RuleSource:
        [source] = _split(connection, broker_id, editor)
        if source.rule_id in {
            r.rule_id for r in store.list_rules(connection, broker_id)
        }:
            raise _Refused(
                editor,
                Problem(
                    _line_of_id(editor.text, source.rule_id),
                    source.rule_id,
                    None,
                    "rule_id",
                    f"a rule with the id {source.rule_id!r} already exists",
                    "give this one another rule_id",
                ),
            )
        _store(connection, broker_id, source, enabled=source.enabled)
        return source

    try:
        source = await page.write(save)
    except _Refused as refused:
        return _recipe_page(page, recipe, values, editor=refused.editor, status=400)
    return page.redirect(f"/rules/{source.rule_id}", "rule-saved", rule=source.rule_id)


__all__ = ["Rule", "Sequence"]
