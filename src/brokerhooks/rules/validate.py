"""Check a rule file when it is saved, and say how to fix each problem.

``validate_rules`` returns every problem it finds, as ``RuleError`` values
that name the rule, the step, the field, the problem and the fix. It checks,
in order:

1. the YAML syntax (and repeated keys, which YAML would silently drop);
2. the shape of the file, each rule and each step (``brokerhooks.rules.model``),
   including unknown event types and each action kind's params;
3. the condition: it must be CEL and name only fields that exist on every
   event type of the trigger;
4. every template param: it must name only existing fields, and render,
   against the sample data of every event type of the trigger, to what the
   param needs (a date, an e-mail address, a URL, a relative path);
5. each schedule: it must count from a date field of the trigger's events;
6. each connection, when the broker's connection names are given.

``load_rules`` does the same and returns the parsed ``RuleFile``, or raises
``InvalidRules`` carrying the errors.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from brokerhooks.rules.conditions import check_condition, compile_condition
from brokerhooks.rules.engine import render_param
from brokerhooks.rules.errors import (
    ConditionSyntaxError,
    InvalidRules,
    RuleError,
    TemplateError,
)
from brokerhooks.rules.fields import (
    PathProblem,
    check_path,
    closest,
    date_fields,
    field_at,
    sample_context,
)
from brokerhooks.rules.model import (
    KINDS,
    PARAMS,
    Rule,
    RuleFile,
    Schedule,
    Step,
    StepBase,
    canonical_trigger,
    number_steps,
)
from brokerhooks.rules.templates import check_template

DOCS: Final = "see docs/rules.md"
_STEP: Final[TypeAdapter[StepBase]] = TypeAdapter(Step)


def validate_rules(
    document: str | Mapping[str, Any] | None,
    *,
    source_name: str = "<rules>",
    connections: Collection[str] | None = None,
) -> list[RuleError]:
    """Every problem in a rule file (YAML text, or its parsed form).

    ``connections`` names the broker's Microsoft 365 connections; when
    given, a step naming another connection is an error.
    """
    return _Validator(source_name, connections).run(document)[1]


def load_rules(
    document: str | Mapping[str, Any] | None,
    *,
    source_name: str = "<rules>",
    connections: Collection[str] | None = None,
) -> RuleFile:
    """The rule file, parsed and checked; raises ``InvalidRules``."""
    rule_file, errors = _Validator(source_name, connections).run(document)
    if errors or rule_file is None:
        raise InvalidRules(errors)
    return rule_file


# ---------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[str] = set()
    for key_node, _ in node.value:
        key = key_node.value
        if isinstance(key_node, yaml.ScalarNode) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice", key_node.start_mark
            )
        if isinstance(key_node, yaml.ScalarNode):
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)

Loc = tuple[str | int, ...]


# A rule file is small; aliases that expand beyond this are a mistake or an
# attack ("billion laughs"), and an alias inside its own anchor never ends.
MAX_VALUES: Final = 20_000
MAX_DEPTH: Final = 50


def _lines(text: str) -> dict[Loc, int]:
    """The line of every key and list item, by its path in the document.

    Raises ``yaml.YAMLError`` when aliases expand beyond ``MAX_VALUES``.
    """
    lines: dict[Loc, int] = {}

    def walk(node: yaml.Node, path: Loc) -> None:
        if len(lines) > MAX_VALUES or len(path) > MAX_DEPTH:
            raise yaml.YAMLError(
                f"the file expands to more than {MAX_VALUES} values or "
                f"{MAX_DEPTH} levels (an alias inside its own anchor?)"
            )
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                here = (*path, str(key_node.value))
                lines[here] = key_node.start_mark.line + 1
                walk(value_node, here)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*path, index)] = item.start_mark.line + 1
                walk(item, (*path, index))

    root = yaml.compose(text, Loader=_Loader)
    if root is not None:
        walk(root, ())
    return lines


def _yaml_error(error: yaml.YAMLError, source: str) -> RuleError:
    mark = getattr(error, "problem_mark", None)
    problem = str(getattr(error, "problem", None) or error)
    line = mark.line + 1 if mark is not None else None
    fix = "fix the YAML: indent with spaces, and quote text containing ': ' or ' #'"
    if "the file expands" in problem:
        fix = "write the values out instead of using aliases (*name)"
    elif "unhashable" in problem or "{" in problem:
        fix = 'quote a value that starts with {{, e.g. title: "{{ deal.name }}"'
    elif "given twice" in problem:
        fix = "keep one of them"
    elif "\\t" in problem or "tab" in problem:
        fix = "indent with spaces, not tabs"
    where = f" (column {mark.column + 1})" if mark is not None else ""
    return RuleError(None, None, "yaml", f"{problem}{where}", fix, source, line)


# ---------------------------------------------------------------- the walk


@dataclass
class _Rule:
    """What is known about one rule while it is checked."""

    index: int
    raw: Mapping[str, Any]
    label: str
    steps: list[Any]
    event_types: tuple[str, ...] = ()
    errors: list[RuleError] = field(default_factory=list)


class _Validator:
    """One validation of one rule file; collects errors rule by rule."""

    def __init__(self, source: str, connections: Collection[str] | None) -> None:
        self.source = source
        self.connections = connections
        self.lines: dict[Loc, int] = {}

    def run(
        self, document: str | Mapping[str, Any] | None
    ) -> tuple[RuleFile | None, list[RuleError]]:
        if isinstance(document, str):
            try:
                self.lines = _lines(document)
                # _Loader is a SafeLoader that also refuses a repeated key.
                document = yaml.load(document, Loader=_Loader)  # noqa: S506
            except yaml.YAMLError as error:
                return None, [_yaml_error(error, self.source)]

        raw_rules, errors = self._top(document)
        rules: list[Rule] = []
        for index, raw in enumerate(raw_rules):
            rule, rule_errors = self._rule(index, raw)
            errors.extend(rule_errors)
            if rule is not None:
                rules.append(rule)
        errors.extend(self._duplicates(raw_rules))
        if errors:
            return None, errors
        return RuleFile(rules=tuple(rules)), []

    def _top(self, document: Any) -> tuple[list[Any], list[RuleError]]:
        if document is None:
            return [], []
        if not isinstance(document, Mapping):
            return [], [
                self._error(None, None, (), "the file is not a mapping", _START)
            ]
        errors = [
            self._error(
                None,
                None,
                (key,),
                f"unknown field {key!r}",
                _did_you_mean(str(key), ["rules"]) or _START,
            )
            for key in document
            if key != "rules"
        ]
        rules = document.get("rules")
        if rules is None:
            return [], errors
        if not isinstance(rules, list):
            errors.append(
                self._error(None, None, ("rules",), "rules is not a list", _START)
            )
            return [], errors
        return rules, errors

    def _duplicates(self, raw_rules: list[Any]) -> Iterator[RuleError]:
        seen: set[str] = set()
        for index, raw in enumerate(raw_rules):
            rule_id = raw.get("id") if isinstance(raw, Mapping) else None
            if not isinstance(rule_id, str):
                continue
            if rule_id in seen:
                yield self._error(
                    rule_id,
                    None,
                    (index, "id"),
                    f"another rule already has the id {rule_id!r}",
                    "give each rule its own id",
                )
            seen.add(rule_id)

    def _error(
        self,
        rule: str | None,
        step: str | None,
        loc: Loc,
        problem: str,
        fix: str,
    ) -> RuleError:
        """A RuleError at ``loc``, with the line of its nearest known part.

        ``loc`` starts with the rule's index (``(0, "actions", 1, "kind")``),
        or is a top-level key of the file (``("rules",)``).
        """
        inside_rule = bool(loc) and isinstance(loc[0], int)
        full: Loc = ("rules", *loc) if inside_rule else loc
        line = None
        while full and line is None:
            line = self.lines.get(full)
            full = full[:-1]
        field_name = _format_loc(loc[1:] if inside_rule else loc)
        if inside_rule and len(loc) == 1:
            field_name = f"rules[{loc[0]}]"
        return RuleError(
            rule, step, field_name or "rules", problem, fix, self.source, line
        )

    # ------------------------------------------------------------ one rule

    def _rule(self, index: int, raw: Any) -> tuple[Rule | None, list[RuleError]]:
        if not isinstance(raw, Mapping):
            return None, [
                self._error(
                    f"#{index + 1}",
                    None,
                    (index,),
                    "a rule must be a mapping",
                    "give it id, trigger, condition and actions keys",
                )
            ]
        rule_id = raw.get("id")
        actions = raw.get("actions")
        state = _Rule(
            index=index,
            raw=raw,
            label=rule_id if isinstance(rule_id, str) else f"#{index + 1}",
            steps=number_steps(actions) if isinstance(actions, list) else [],
        )
        rule: Rule | None = None
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as error:
            state.errors.extend(self._shape_errors(state, error))

        try:
            state.event_types = canonical_trigger(raw.get("trigger"))
        except ValueError:
            return None, state.errors  # reported above; the rest depends on it
        self._condition(state)
        for position, raw_step in enumerate(state.steps):
            self._step(state, position, raw_step)
        state.errors.sort(key=lambda error: error.line or 0)
        return (rule if not state.errors else None), state.errors

    def _step_label(self, state: _Rule, position: int) -> str | None:
        if not 0 <= position < len(state.steps):
            return None
        raw_step = state.steps[position]
        step_id = raw_step.get("id") if isinstance(raw_step, Mapping) else None
        return step_id if isinstance(step_id, str) else f"step-{position + 1}"

    def _shape_errors(
        self, state: _Rule, error: ValidationError
    ) -> Iterator[RuleError]:
        seen: set[Loc] = set()
        details = error.errors(include_url=False)
        for detail in details:
            loc = _clean_loc(tuple(detail["loc"]))
            if detail["type"] == "too_short" and any(
                len(other["loc"]) > 1 and other["loc"][0] == "actions"
                for other in details
            ):
                continue  # the steps' own errors say more
            if loc in seen:
                continue  # one message per field, not one per member of a union
            seen.add(loc)
            step = None
            if len(loc) > 1 and loc[0] == "actions" and isinstance(loc[1], int):
                step = self._step_label(state, loc[1])
            if detail["type"].startswith("union_tag"):
                loc = (*loc, "kind")
            problem, fix = _explain(detail, loc, self._kind_at(state, loc))
            yield self._error(state.label, step, (state.index, *loc), problem, fix)

    def _kind_at(self, state: _Rule, loc: Loc) -> str | None:
        if len(loc) > 1 and loc[0] == "actions" and isinstance(loc[1], int):
            raw_step = state.steps[loc[1]] if loc[1] < len(state.steps) else None
            kind = raw_step.get("kind") if isinstance(raw_step, Mapping) else None
            return kind if isinstance(kind, str) else None
        return None

    # ------------------------------------------------------------ condition

    def _condition(self, state: _Rule) -> None:
        source = state.raw.get("condition")
        if not isinstance(source, str) or not source.strip():
            return
        loc: Loc = (state.index, "condition")
        try:
            condition = compile_condition(source.strip())
        except ConditionSyntaxError as error:
            state.errors.append(
                self._error(
                    state.label,
                    None,
                    loc,
                    str(error),
                    'check the operators (==, !=, &&, ||) and that text is in "quotes"',
                )
            )
            return
        for problem in check_condition(condition, state.event_types):
            state.errors.append(self._problem(state, None, loc, problem))

    def _problem(
        self, state: _Rule, step: str | None, loc: Loc, problem: PathProblem
    ) -> RuleError:
        return self._error(state.label, step, loc, problem.problem, problem.fix)

    # ------------------------------------------------------------ steps

    def _step(self, state: _Rule, position: int, raw_step: Any) -> None:
        loc: Loc = (state.index, "actions", position)
        try:
            step = _STEP.validate_python(raw_step)
        except ValidationError:
            # Its shape errors are reported already; still check its templates.
            self._raw_templates(state, position, raw_step, loc)
            return
        label = step.id
        for key in step.params.texts:
            self._template_param(state, step, key, (*loc, "params", key))
        if step.schedule is not None:
            self._schedule(state, label, step.schedule, (*loc, "schedule"))
        if self.connections is not None and step.connection is not None:
            self._connection(state, label, step.connection, (*loc, "connection"))

    def _raw_templates(
        self, state: _Rule, position: int, raw_step: Any, loc: Loc
    ) -> None:
        kind = raw_step.get("kind") if isinstance(raw_step, Mapping) else None
        params = raw_step.get("params") if isinstance(raw_step, Mapping) else None
        if kind not in PARAMS or not isinstance(params, Mapping):
            return
        label = self._step_label(state, position) or f"step-{position + 1}"
        for key in PARAMS[kind].texts:
            if params.get(key) is not None:
                self._check_templates(state, label, params[key], (*loc, "params", key))

    def _template_param(self, state: _Rule, step: StepBase, key: str, loc: Loc) -> None:
        value = step.params.model_dump(by_alias=True).get(key)
        if value is not None and self._check_templates(state, step.id, value, loc):
            self._render(state, step, key, loc)

    def _check_templates(self, state: _Rule, step: str, value: Any, loc: Loc) -> bool:
        """Check the names every template in ``value`` reads; true if all exist."""
        clean = True
        for where, source in _templates(value, loc):
            try:
                name = _format_loc(where[3:])
                problems = check_template(source, state.event_types, name=name)
            except TemplateError as error:
                state.errors.append(self._template_error(state, step, where, error))
                clean = False
                continue
            for problem in problems:
                state.errors.append(self._problem(state, step, where, problem))
                clean = False
        return clean

    def _render(self, state: _Rule, step: StepBase, key: str, loc: Loc) -> None:
        """Render against every trigger event's sample; report each failure once."""
        failures: dict[str, tuple[TemplateError, list[str]]] = {}
        for event_type in state.event_types:
            try:
                render_param(
                    step.params, key, sample_context(event_type, all_changes=True)
                )
            except TemplateError as error:
                failures.setdefault(str(error), (error, []))[1].append(event_type)
        for failure, event_types in failures.values():
            on = ""
            if len(event_types) < len(state.event_types):
                on = f" on {', '.join(event_types)} events"
            where = _loc_of(loc, failure.template)
            state.errors.append(
                self._template_error(state, step.id, where, failure, suffix=on)
            )

    def _template_error(
        self,
        state: _Rule,
        step: str,
        loc: Loc,
        error: TemplateError,
        *,
        suffix: str = "",
    ) -> RuleError:
        fix = error.fix or DOCS
        return self._error(state.label, step, loc, f"{error.problem}{suffix}", fix)

    def _schedule(self, state: _Rule, step: str, schedule: Schedule, loc: Loc) -> None:
        anchor: Loc = (*loc, "before" if schedule.before is not None else "after")
        problem = check_path(schedule.path, state.event_types)
        if problem is not None:
            state.errors.append(self._problem(state, step, anchor, problem))
            return
        for event_type in state.event_types:
            target = field_at(schedule.path, event_type)
            if target is not None and not target.is_date:
                dates = [
                    path
                    for path in date_fields(event_type)
                    if path.split(".")[0] in ("deal", "contact", "note")
                ]
                state.errors.append(
                    self._error(
                        state.label,
                        step,
                        anchor,
                        f"{schedule.field} is a {target.type}, not a date",
                        f"count from a date field: {', '.join(dates)}",
                    )
                )
                return

    def _connection(self, state: _Rule, step: str, name: str, loc: Loc) -> None:
        assert self.connections is not None
        if name in self.connections:
            return
        guess = closest(name, self.connections)
        known = ", ".join(sorted(self.connections)) or "none yet"
        fix = (
            f"did you mean {guess}?" if guess else f"the broker's connections: {known}"
        )
        state.errors.append(
            self._error(
                state.label, step, loc, f"there is no connection named {name!r}", fix
            )
        )


_START: Final = "start the file with rules: followed by a list of rules"


def _templates(value: Any, loc: Loc) -> Iterator[tuple[Loc, str]]:
    """Every template text in a param's value, with its location."""
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _templates(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _templates(item, (*loc, str(key)))


def _loc_of(loc: Loc, template: str) -> Loc:
    """The location of a rendered template, from the name the engine gave it."""
    base = loc[: loc.index("params")]
    path: list[str | int] = []
    for part in template.replace("]", "").replace("[", ".").split("."):
        path.append(int(part) if part.isdigit() else part)
    return (*base, *path)


# ---------------------------------------------------------------- messages


def _clean_loc(loc: Loc) -> Loc:
    """Drop pydantic's union tags (``todo_task``, ``str``, ``list[str]``)."""
    cleaned: list[str | int] = []
    for index, part in enumerate(loc):
        if isinstance(part, str):
            after_step = index == 2 and loc[0] == "actions"
            if (after_step and part in KINDS) or _is_type_tag(part):
                continue
        cleaned.append(part)
    return tuple(cleaned)


def _is_type_tag(part: str) -> bool:
    return part in ("str", "int", "bool", "float") or "[" in part or "-" in part


def _format_loc(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


_TYPES: Final = {
    "string_type": "text",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "int_type": "a whole number",
}


def _explain(detail: Any, loc: Loc, kind: str | None) -> tuple[str, str]:
    """A pydantic error as a problem and a fix, in the rule file's words."""
    error_type = detail["type"]
    context = detail.get("ctx") or {}
    name = str(next((part for part in reversed(loc) if isinstance(part, str)), "value"))
    value = detail.get("input")
    if error_type == "rule":
        return str(context["problem"]), str(context["fix"])
    if error_type == "missing":
        return f"{name} is missing", f"add {name}: {_EXAMPLES.get(name, '...')}"
    if error_type == "extra_forbidden":
        allowed = _allowed_keys(loc, kind)
        return f"unknown field {name!r}", _did_you_mean(name, allowed) or (
            f"the fields here are: {', '.join(allowed)}"
        )
    if error_type == "union_tag_invalid":
        tag = str(context.get("tag"))
        return f"{tag!r} is not an action kind", _did_you_mean(tag, KINDS) or (
            f"use one of {', '.join(KINDS)}"
        )
    if error_type == "union_tag_not_found":
        return "the step has no kind", f"add kind: one of {', '.join(KINDS)}"
    if error_type == "literal_error":
        return f"{value!r} is not allowed", f"use one of {context.get('expected')}"
    if error_type == "too_short" and name == "actions":
        return "the rule has no steps", "add at least one step under actions:"
    if error_type in _TYPES and len(loc) == 2 and loc[0] == "actions":
        return (
            f"a step must be a mapping, not {_describe(value)}",
            "give it kind and params, e.g. - kind: todo_task",
        )
    if error_type in _TYPES:
        return _type_problem(name, _TYPES[error_type], value)
    return str(detail["msg"]), DOCS


def _type_problem(name: str, wanted: str, value: Any) -> tuple[str, str]:
    problem = f"{name} must be {wanted}, not {_describe(value)}"
    if wanted == "text" and isinstance(value, int | float | bool | date):
        return problem, f'put the value in quotes, e.g. {name}: "{value}"'
    if wanted == "a mapping":
        return problem, f"indent the fields of {name} under it"
    return problem, DOCS


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{value!r}"


_EXAMPLES: Final = {
    "id": "a-slug-like-this",
    "trigger": "dealChangesStage",
    "actions": "a list of steps",
    "kind": "todo_task",
    "params": "the kind's params",
}


def _allowed_keys(loc: Loc, kind: str | None) -> list[str]:
    model: type[BaseModel] = Rule
    if "params" in loc and kind in PARAMS:
        model = PARAMS[kind]
    elif "schedule" in loc:
        model = Schedule
    elif loc and loc[0] == "actions":
        model = StepBase
    return [info.alias or name for name, info in model.model_fields.items()]


def _did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    guess = closest(word, candidates)
    return f"did you mean {guess}?" if guess else None
