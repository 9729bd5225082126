"""Rule conditions in CEL: compiled once, evaluated safely, explained.

A condition is one CEL expression over the rule's variables (see
``brokerhooks.rules.fields``). ``compile_condition`` parses it and raises
``ConditionSyntaxError`` when it is not CEL. ``check_condition`` walks the
parsed expression and reports the names that do not exist for the trigger's
event types. ``evaluate_condition`` never raises: a missing key, a null or a
type clash gives a failed ``ConditionResult`` whose ``error`` says which
value was missing. When the expression is parts joined by ``&&`` or ``||``
at its top level, the result also carries the value of each part and of
the fields each part read, so a trace can say why a rule did not fire.
"""

from __future__ import annotations

import ast
import functools
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, CELFunction, Result, base_functions

from brokerhooks.rules.errors import ConditionSyntaxError
from brokerhooks.rules.fields import (
    Path,
    PathProblem,
    Reference,
    Segment,
    check_references,
    closest,
    resolve,
)

Operator = Literal["&&", "||"]

# Macros take a variable name and an expression instead of values.
_ITERATING_MACROS: Final = frozenset({"all", "exists", "exists_one", "map", "filter"})


def _from_millis(value: celtypes.Value) -> celtypes.TimestampType:
    """``fromMillis(deal.dueDate)``: epoch milliseconds as a CEL timestamp."""
    if not isinstance(value, celtypes.IntType | celtypes.DoubleType):
        raise TypeError(f"fromMillis needs a number, not {_cel_type_name(value)}")
    moment = datetime.fromtimestamp(float(value) / 1000, tz=UTC)
    return celtypes.TimestampType(moment)


# celpy 0.5 raises on `deal.dueDate == null` and `650000 > 500000.0`. The CEL
# specification says values of different types are unequal and numbers
# compare by value, whatever their type; these operators do that.
_NUMBERS: Final = (celtypes.IntType, celtypes.UintType, celtypes.DoubleType)


def _mixed_numbers(left: Result, right: Result) -> bool:
    both = isinstance(left, _NUMBERS) and isinstance(right, _NUMBERS)
    return both and type(left) is not type(right)


def _equal(left: Result, right: Result) -> Result:
    if isinstance(left, CELEvalError):
        return left
    if isinstance(right, CELEvalError):
        return right
    if _mixed_numbers(left, right):
        return celtypes.BoolType(_plain(left) == _plain(right))
    try:
        return base_functions["_==_"](left, right)
    except TypeError:
        return celtypes.BoolType(False)


def _not_equal(left: Result, right: Result) -> Result:
    equal = _equal(left, right)
    return equal if isinstance(equal, CELEvalError) else celtypes.BoolType(not equal)


def _ordering(name: str, compare: Callable[[Any, Any], bool]) -> CELFunction:
    def order(left: Result, right: Result) -> Result:
        if _mixed_numbers(left, right):
            return celtypes.BoolType(compare(_plain(left), _plain(right)))
        return base_functions[name](left, right)

    return order


def _plain(number: Result) -> int | float:
    if isinstance(number, celtypes.DoubleType):
        return float(number)
    assert isinstance(number, celtypes.IntType | celtypes.UintType)
    return int(number)


_OPERATOR_FUNCTIONS: Final[dict[str, CELFunction]] = {
    "_==_": _equal,
    "_!=_": _not_equal,
    "_<_": _ordering("_<_", operator.lt),
    "_<=_": _ordering("_<=_", operator.le),
    "_>_": _ordering("_>_", operator.gt),
    "_>=_": _ordering("_>=_", operator.ge),
}
_EXTRA_FUNCTIONS: Final[dict[str, CELFunction]] = {
    "fromMillis": _from_millis,
    **_OPERATOR_FUNCTIONS,
}
FUNCTIONS: Final = frozenset(
    [name for name in base_functions if name[0].isalpha()]
    + list(_ITERATING_MACROS | {"has", "fromMillis"})
)

# One environment for every condition. (Creating it raises Python's recursion
# limit to 2,500, which celpy needs for deeply nested expressions.)
_ENVIRONMENT: Final = celpy.Environment()


@dataclass(frozen=True, slots=True)
class Part:
    """A top-level operand of ``&&`` or ``||``, compiled on its own."""

    text: str
    program: celpy.Runner = field(repr=False, compare=False)
    references: tuple[Reference, ...]


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition, ready to evaluate many times."""

    source: str
    program: celpy.Runner = field(repr=False, compare=False)
    references: tuple[Reference, ...]
    functions: tuple[str, ...]
    operator: Operator | None = None
    parts: tuple[Part, ...] = ()


@functools.lru_cache(maxsize=1024)
def compile_condition(source: str) -> Condition:
    """Parse ``source`` as CEL; raise ``ConditionSyntaxError`` if it is not."""
    tree = _parse(source)
    collector = _Collector()
    collector.visit(tree)
    joined_by, operands = _split(tree)
    parts = tuple(_part(source, operand) for operand in operands)
    return Condition(
        source=source,
        program=_ENVIRONMENT.program(tree, functions=_EXTRA_FUNCTIONS),
        references=tuple(dict.fromkeys(collector.references)),
        functions=tuple(dict.fromkeys(collector.functions)),
        operator=joined_by if parts else None,
        parts=parts,
    )


def _parse(source: str) -> lark.Tree[lark.Token]:
    try:
        return _ENVIRONMENT.compile(source)
    except CELParseError as error:
        line, column = error.line, error.column
        raise ConditionSyntaxError(
            _syntax_message(source, line, column), line=line, column=column
        ) from None
    except (lark.exceptions.LarkError, ValueError) as error:  # unusual lexer failures
        raise ConditionSyntaxError(
            f"not a valid CEL expression: {error}", line=None, column=None
        ) from None


def _syntax_message(source: str, line: int | None, column: int | None) -> str:
    if line is None or column is None:
        return "not a valid CEL expression"
    text = source.splitlines()[line - 1] if source.splitlines() else ""
    before = text[: column - 1].strip()
    after = text[column - 1 :].strip()
    if not after:
        return f"the expression ends too early, after {before[-30:]!r}"
    where = f"line {line}, column {column}" if "\n" in source else f"column {column}"
    return f"CEL syntax error at {where}, before {after[:30]!r}"


def _part(source: str, node: lark.Tree[lark.Token]) -> Part:
    text = source[node.meta.start_pos : node.meta.end_pos]
    collector = _Collector()
    collector.visit(node)
    return Part(
        text=text,
        program=_ENVIRONMENT.program(_parse(text), functions=_EXTRA_FUNCTIONS),
        references=tuple(dict.fromkeys(collector.references)),
    )


def _split(tree: lark.Tree[lark.Token]) -> tuple[Operator, list[lark.Tree[lark.Token]]]:
    """The top-level operands of ``||``, or else of ``&&``; none if neither."""
    if len(tree.children) != 1:  # a ternary at the top
        return "||", []
    top = tree.children[0]
    assert isinstance(top, lark.Tree)
    ors = _flatten(top, "conditionalor")
    if len(ors) > 1:
        return "||", ors
    ands = _flatten(ors[0], "conditionaland")
    return "&&", ands if len(ands) > 1 else []


def _flatten(node: lark.Tree[lark.Token], kind: str) -> list[lark.Tree[lark.Token]]:
    """``a || b || c`` is left-nested in the tree; list its operands."""
    operands: list[lark.Tree[lark.Token]] = []
    while node.data == kind and len(node.children) == 2:
        left, right = node.children
        assert isinstance(left, lark.Tree)
        assert isinstance(right, lark.Tree)
        operands.insert(0, right)
        node = left
    inner = node.children[0] if node.data == kind else node
    assert isinstance(inner, lark.Tree)
    operands.insert(0, inner)
    return operands


# ---------------------------------------------------------------- references


class _Collector:
    """Finds the field paths and functions an expression uses."""

    def __init__(self) -> None:
        self.references: list[Reference] = []
        self.functions: list[str] = []

    def visit(
        self,
        node: lark.Tree[lark.Token] | lark.Token,
        scope: Mapping[str, Path | None] | None = None,
        guarded: bool = False,
    ) -> None:
        scope = scope or {}
        if not isinstance(node, lark.Tree):
            return
        chain = _chain(node)
        if chain is not None:
            self._record(chain, scope, guarded)
        elif node.data == "member_dot_arg":
            self._method(node, scope)
        elif node.data == "ident_arg":
            name = str(node.children[0])
            self.functions.append(name)
            for child in node.children[1:]:
                self.visit(child, scope, guarded=name == "has")
        elif node.data in ("dot_ident", "dot_ident_arg", "member_object"):
            return  # qualified names and messages: not used by our variables
        else:
            for child in node.children:
                self.visit(child, scope, guarded)

    def _record(
        self, written: Path, scope: Mapping[str, Path | None], guarded: bool
    ) -> None:
        root = str(written[0])
        if root in scope:
            base = scope[root]
            if base is not None:
                self.references.append(
                    Reference((*base, *written[1:]), written, guarded)
                )
            return
        self.references.append(Reference(written, written, guarded))

    def _method(
        self, node: lark.Tree[lark.Token], scope: Mapping[str, Path | None]
    ) -> None:
        receiver, name_token, *rest = node.children
        name = str(name_token)
        arguments = _arguments(rest[0] if rest else None)
        self.functions.append(name)
        self.visit(receiver, scope)
        variable = _chain(arguments[0]) if arguments else None
        if name in _ITERATING_MACROS and variable is not None and len(variable) == 1:
            base = self._path_of(receiver, scope)
            inner = {
                **scope,
                str(variable[0]): (*base, 0) if base is not None else None,
            }
            for argument in arguments[1:]:
                self.visit(argument, inner)
            return
        for argument in arguments:
            self.visit(argument, scope)

    @staticmethod
    def _path_of(
        node: lark.Tree[lark.Token] | lark.Token, scope: Mapping[str, Path | None]
    ) -> Path | None:
        written = _chain(node) if isinstance(node, lark.Tree) else None
        if written is None:
            return None
        root = str(written[0])
        if root in scope:
            base = scope[root]
            return None if base is None else (*base, *written[1:])
        return written


def _arguments(
    exprlist: lark.Tree[lark.Token] | lark.Token | None,
) -> list[lark.Tree[lark.Token]]:
    if not isinstance(exprlist, lark.Tree):
        return []
    return [child for child in exprlist.children if isinstance(child, lark.Tree)]


_PASS_THROUGH: Final = frozenset(
    {"expr", "conditionalor", "conditionaland", "relation", "addition"}
    | {"multiplication", "unary", "member", "primary", "paren_expr"}
)


def _chain(node: lark.Tree[lark.Token]) -> Path | None:
    """The path a plain field reference reads (``deal.stage.name``), or None."""
    if node.data in _PASS_THROUGH:
        if len(node.children) != 1 or not isinstance(node.children[0], lark.Tree):
            return None
        return _chain(node.children[0])
    if node.data == "ident":
        return (str(node.children[0]),)
    if node.data == "member_dot":
        inner, name = node.children
        assert isinstance(inner, lark.Tree)
        base = _chain(inner)
        return None if base is None else (*base, str(name))
    if node.data == "member_index":
        inner, index = node.children
        assert isinstance(inner, lark.Tree)
        assert isinstance(index, lark.Tree)
        base, key = _chain(inner), _literal(index)
        return None if base is None or key is None else (*base, key)
    return None


def _literal(node: lark.Tree[lark.Token]) -> Segment | None:
    """A string or int literal's value (``deal["name"]``, ``labels[0]``)."""
    while len(node.children) == 1 and isinstance(node.children[0], lark.Tree):
        node = node.children[0]
    if node.data != "literal" or not isinstance(node.children[0], lark.Token):
        return None
    token = node.children[0]
    if token.type == "INT_LIT":
        return int(token.value, 0)
    if token.type == "STRING_LIT" and token.value[0] in "\"'":
        value = ast.literal_eval(token.value)
        return value if isinstance(value, str) else None
    return None


# ---------------------------------------------------------------- static check


def check_condition(
    condition: Condition, event_types: Sequence[str]
) -> list[PathProblem]:
    """Every name in ``condition`` that does not exist for ``event_types``."""
    problems: list[PathProblem] = []
    for name in condition.functions:
        if name not in FUNCTIONS:
            guess = closest(name, FUNCTIONS)
            problems.append(
                PathProblem(
                    name,
                    f"{name}() is not a CEL function",
                    f"did you mean {guess}()?" if guess else "see docs/rules.md",
                )
            )
    return problems + check_references(condition.references, event_types)


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class PartResult:
    """One top-level operand: its text, value or error, and what it read."""

    text: str
    value: Any = None
    error: str | None = None
    reads: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ConditionResult:
    """The outcome of a condition, with what a trace needs to explain it."""

    source: str | None
    value: Any = True
    error: str | None = None
    operator: Operator | None = None
    parts: tuple[PartResult, ...] = ()
    reads: tuple[tuple[str, str], ...] = ()

    @property
    def passed(self) -> bool:
        return self.error is None and self.value is True

    def explain(self) -> list[str]:
        """Lines saying what the condition gave and, part by part, why."""
        if self.source is None:
            return ["no condition: true"]
        head = f"failed: {self.error}" if self.error else show(self.value)
        lines = [f"condition {head}"]
        if self.parts:
            for part in self.parts:
                outcome = f"failed: {part.error}" if part.error else show(part.value)
                lines.append(f"  {self.operator} {part.text}  -> {outcome}")
                lines.extend(f"       {path} = {value}" for path, value in part.reads)
        else:
            lines.extend(f"  {path} = {value}" for path, value in self.reads)
        return lines


def evaluate_condition(
    condition: Condition | None, variables: Mapping[str, Any]
) -> ConditionResult:
    """Evaluate ``condition`` against a rule's variables; never raises."""
    if condition is None:
        return ConditionResult(source=None)
    try:
        activation = {name: to_cel(value) for name, value in variables.items()}
    except (TypeError, ValueError) as unusable:
        return ConditionResult(condition.source, None, f"unusable data: {unusable}")

    value, error = _run(condition.program, condition.references, activation, variables)
    parts = tuple(_run_part(part, activation, variables) for part in condition.parts)
    return ConditionResult(
        source=condition.source,
        value=value,
        error=error,
        operator=condition.operator,
        parts=parts,
        reads=_reads(condition.references, variables),
    )


def _run_part(
    part: Part, activation: Mapping[str, Any], variables: Mapping[str, Any]
) -> PartResult:
    value, error = _run(part.program, part.references, activation, variables)
    return PartResult(part.text, value, error, _reads(part.references, variables))


def _run(
    program: celpy.Runner,
    references: Sequence[Reference],
    activation: Mapping[str, Any],
    variables: Mapping[str, Any],
) -> tuple[Any, str | None]:
    try:
        result: Any = program.evaluate(activation)
    except CELEvalError as error:
        result = error
    except Exception as error:  # celpy's own faults must not stop a run
        return None, f"the condition could not be evaluated: {error!r}"
    if isinstance(result, CELEvalError):
        return None, _diagnose(result, references, variables)
    value = from_cel(result)
    if not isinstance(value, bool):
        return value, f"gave {show(value)}, not true or false"
    return value, None


_ACCESS_FAILURES: Final = re.compile(
    r"no such member|no such key|does not support field selection|invalid_argument"
    r"|not subscriptable|index out of range|CELEvalError"
)


def _diagnose(
    error: CELEvalError, references: Sequence[Reference], variables: Mapping[str, Any]
) -> str:
    """Say which value was missing, rather than CEL's internal message."""
    if _ACCESS_FAILURES.search(str(error.args[0]) if error.args else ""):
        for reference in references:
            if reference.bound:
                continue
            path = reference.path[:-1] if reference.guarded else reference.path
            resolved = resolve(path, variables)
            if resolved.missing is not None:
                return "; ".join(filter(None, (resolved.missing, resolved.fix)))
    return _clean(error)


_OPERATORS: Final = {
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
}
_OVERLOAD: Final = re.compile(r"Token\('RULE', '(\w+)'\) applied to '\((.*)\)'")


def _clean(error: CELEvalError) -> str:
    text = str(error.args[0]) if error.args else repr(error)
    text = text.split(" (in activation", 1)[0]
    overload = _OVERLOAD.search(text)
    if overload:
        operator = _OPERATORS.get(overload.group(1), overload.group(1))
        kinds = re.findall(r"celtypes\.(\w+)Type|'NoneType'", overload.group(2))
        names = [(kind or "null").lower() for kind in kinds]
        message = f"cannot apply {operator} to {' and '.join(names)}"
        if set(names) == {"int", "double"}:
            message += " (write 1.0, not 1, in arithmetic with decimals)"
        return message
    member = re.fullmatch(r"no such member in mapping: '(.*)'", text)
    if member:
        return f"no field {member.group(1)!r}"
    return text.replace("undeclared reference to", "unknown name")


def _reads(
    references: Sequence[Reference], variables: Mapping[str, Any]
) -> tuple[tuple[str, str], ...]:
    reads: dict[str, str] = {}
    for reference in references:
        if reference.bound or reference.text in reads:
            continue
        resolved = resolve(reference.path, variables)
        shown = "undefined" if resolved.missing else show(resolved.value)
        reads[reference.text] = shown
    return tuple(reads.items())


# ---------------------------------------------------------------- values


def to_cel(value: Any) -> celtypes.Value:
    """A Python value of a rule's variables as a CEL value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, datetime):
        return celtypes.TimestampType(
            value if value.tzinfo else value.replace(tzinfo=UTC)
        )
    if isinstance(value, date):
        return celtypes.TimestampType(
            datetime(value.year, value.month, value.day, tzinfo=UTC)
        )
    if isinstance(value, timedelta):
        return celtypes.DurationType(value)
    if isinstance(value, Mapping):
        return celtypes.MapType(
            {celtypes.StringType(str(key)): to_cel(item) for key, item in value.items()}
        )
    if isinstance(value, list | tuple):
        return celtypes.ListType([to_cel(item) for item in value])
    raise TypeError(f"{type(value).__name__} values cannot be used in a condition")


def from_cel(value: Any) -> Any:
    """A CEL value as plain Python (bool, int, float, str, list, dict, datetime)."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.TimestampType):
        return datetime.fromisoformat(value.isoformat())
    if isinstance(value, celtypes.DurationType):
        return timedelta(seconds=value.total_seconds())
    if isinstance(value, celtypes.MapType):
        return {from_cel(key): from_cel(item) for key, item in value.items()}
    if isinstance(value, celtypes.ListType):
        return [from_cel(item) for item in value]
    return value


def show(value: Any, limit: int = 80) -> str:
    """A value as a trace shows it: JSON-like, cut to ``limit`` characters."""
    if isinstance(value, datetime):
        return value.isoformat()
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cel_type_name(value: object) -> str:
    return (
        "null" if value is None else type(value).__name__.removesuffix("Type").lower()
    )
