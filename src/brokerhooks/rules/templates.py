"""Templates for step params: Jinja2, sandboxed, strict about undefined names.

A text param such as ``title: "Order valuation for {{ deal.name }}"`` is
rendered against the rule's variables (``brokerhooks.rules.fields``). The
sandbox keeps templates away from Python internals; ``StrictUndefined``
turns a misspelt name into an error instead of an empty string. Rendered
text is plain (no escaping) unless ``html=True``, used for HTML mail bodies,
where every value is HTML-escaped.

Filters: ``date`` (format a date), ``date_add`` (shift one), ``money`` and
``default``. Dates show in the broker's time zone (``broker.timezone``,
else ``DEFAULT_TIMEZONE``). ``None`` renders as an empty string and a
datetime as ISO 8601.

``render`` raises ``TemplateError`` naming the template and, when a name
was undefined, the path and the likely fix. ``check_template`` reports the
names that do not exist for a trigger's event types, without rendering.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
    pass_context,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from brokerhooks.rules.errors import TemplateError
from brokerhooks.rules.fields import (
    Path,
    PathProblem,
    Reference,
    check_references,
    closest,
    resolve,
)

# Brokers are in Australia and New Zealand; a SalesTrekker date picked as
# "20 March" is local midnight, which in UTC is often the day before.
DEFAULT_TIMEZONE: Final = "Australia/Sydney"
DATE_FORMAT: Final = "%d %b %Y"


# What one `*` or `**` may build: a template must not exhaust the worker.
MAX_REPEAT: Final = 100_000
MAX_EXPONENT: Final = 64


class _Environment(SandboxedEnvironment):
    """The sandbox, reading ``deal.values`` as the deal's field (not
    ``dict.values``) and refusing ``*`` and ``**`` that build huge values."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponents above {MAX_EXPONENT} are not allowed")
        return super().call_binop(context, operator, left, right)


def _check_repeat(sequence: Any, count: Any) -> None:
    repeated = isinstance(sequence, str | list | tuple) and isinstance(count, int)
    if repeated and len(sequence) * count > MAX_REPEAT:
        raise SecurityError(f"a value longer than {MAX_REPEAT} is not allowed")


# ---------------------------------------------------------------- filters


def _require(value: Any) -> None:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError, naming the variable


def timezone_of(variables: Mapping[str, Any] | Context) -> tzinfo:
    """The broker's time zone (``broker.timezone``), else ``DEFAULT_TIMEZONE``.

    Raises ``ValueError`` when ``broker.timezone`` is not a time zone name.
    """
    broker = variables.get("broker")
    name = broker.get("timezone") if isinstance(broker, Mapping) else None
    try:
        return ZoneInfo(str(name or DEFAULT_TIMEZONE))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"broker.timezone {name!r} is not a time zone; use a name such as "
            "Australia/Sydney or Pacific/Auckland"
        ) from None


def to_datetime(value: Any, zone: tzinfo) -> datetime | None:
    """A date in any form a rule sees it, as an aware datetime in ``zone``.

    Numbers are epoch milliseconds (SalesTrekker's dates); numbers too small
    to be milliseconds after 1973 are taken as seconds. Strings are ISO 8601.
    A date or naive datetime is read as local time in ``zone``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a date")
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float):
        seconds = value / 1000 if abs(value) >= 100_000_000_000 else value
        return datetime.fromtimestamp(seconds, tz=zone)
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return to_datetime(int(value.strip()), zone)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a date or time") from None
    else:
        raise ValueError(f"a {type(value).__name__} is not a date")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=zone)
    return moment.astimezone(zone)


@pass_context
def _date(context: Context, value: Any, format: str = DATE_FORMAT) -> str:
    """``{{ deal.dueDate | date }}`` -> ``11 Apr 2025``; any strftime format."""
    _require(value)
    moment = to_datetime(value, timezone_of(context))
    return "" if moment is None else moment.strftime(format)


@pass_context
def _date_add(
    context: Context,
    value: Any,
    days: float = 0,
    hours: float = 0,
    minutes: float = 0,
    weeks: float = 0,
) -> datetime | None:
    """``{{ deal.dueDate | date_add(days=-2) }}``: the date moved; null stays null."""
    _require(value)
    moment = to_datetime(value, timezone_of(context))
    if moment is None:
        return None
    return moment + timedelta(days=days, hours=hours, minutes=minutes, weeks=weeks)


def _money(value: Any, symbol: str = "$", places: int = 2) -> str:
    """``{{ deal.values.onceOff | money }}`` -> ``$650,000.00``."""
    _require(value)
    if value is None or value == "":
        return ""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not an amount") from None
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{abs(amount):,.{places}f}"


def _default(value: Any, fallback: Any = "") -> Any:
    """``{{ contact.person.information.preferredName | default("there") }}``.

    Replaces an undefined name, a null and an empty string.
    """
    if isinstance(value, Undefined) or value is None or value == "":
        return fallback
    return value


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return value


FILTERS: Final = {
    "date": _date,
    "date_add": _date_add,
    "money": _money,
    "default": _default,
}


def _environment(html: bool) -> _Environment:
    environment = _Environment(
        undefined=StrictUndefined,
        autoescape=html,
        finalize=_finalize,
        keep_trailing_newline=True,
    )
    environment.filters.update(FILTERS)
    environment.filters["d"] = _default
    return environment


_ENVIRONMENTS: Final = {False: _environment(False), True: _environment(True)}


# ---------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=2048)
def _compile(source: str, html: bool) -> Template:
    return _ENVIRONMENTS[html].from_string(source)


def compile_template(source: str, *, name: str, html: bool = False) -> Template:
    """Parse ``source`` once; raise ``TemplateError`` if it is not a template."""
    try:
        return _compile(source, html)
    except TemplateSyntaxError as error:
        raise _syntax_error(name, error) from None


def _syntax_error(name: str, error: TemplateSyntaxError) -> TemplateError:
    message = error.message or "syntax error"
    fix = "check that every {{ has its }} and every {% has its %}"
    if message.startswith("No filter named"):
        wanted = message.split("'")[1] if "'" in message else ""
        guess = closest(wanted, FILTERS)
        fix = f"did you mean {guess}?" if guess else f"use one of {', '.join(FILTERS)}"
        return TemplateError(name, f"there is no filter {wanted!r}", fix=fix)
    where = f" at line {error.lineno}" if error.lineno and error.lineno > 1 else ""
    return TemplateError(name, f"syntax error{where}: {message}", fix=fix)


def render(
    source: str,
    variables: Mapping[str, Any],
    *,
    name: str = "template",
    html: bool = False,
) -> str:
    """Render ``source`` against a rule's variables.

    Raises ``TemplateError``: for a syntax error, an undefined name (with
    the path and a suggestion), a forbidden attribute, or a filter given a
    value it cannot use.
    """
    template = compile_template(source, name=name, html=html)
    try:
        return template.render(dict(variables))
    except UndefinedError as error:
        raise _undefined(name, source, variables, error) from None
    except SecurityError as error:
        raise TemplateError(
            name,
            f"not allowed in a template: {str(error).rstrip('.')}",
            fix="use only the variables and filters of docs/rules.md",
        ) from None
    except Exception as error:  # any fault in a template is the template's error
        raise TemplateError(name, _describe(error)) from None


def _describe(error: Exception) -> str:
    text = str(error).rstrip(".")
    return text if isinstance(error, ValueError) else f"{type(error).__name__}: {text}"


def _undefined(
    name: str, source: str, variables: Mapping[str, Any], error: UndefinedError
) -> TemplateError:
    for reference in template_references(source, name=name):
        if reference.bound or reference.guarded:
            continue
        resolved = resolve(reference.path, variables, language="jinja")
        if resolved.missing is not None:
            return TemplateError(
                name, resolved.missing, fix=resolved.fix, missing=reference.text
            )
    return TemplateError(name, error.message or "a name is undefined")


# ---------------------------------------------------------------- static check


_GLOBALS: Final = frozenset(_ENVIRONMENTS[False].globals) | {"loop", "super", "self"}


def template_references(source: str, *, name: str = "template") -> list[Reference]:
    """The field paths ``source`` reads, in order, each once."""
    try:
        tree = _ENVIRONMENTS[False].parse(source)
    except TemplateSyntaxError as error:
        raise _syntax_error(name, error) from None
    local = {
        node.name
        for node in tree.find_all(nodes.Name)
        if node.ctx in ("store", "param")
    }
    finder = _Finder()
    finder.visit(tree, dict.fromkeys(local | _GLOBALS))
    return list(dict.fromkeys(finder.references))


def check_template(
    source: str, event_types: Sequence[str], *, name: str = "template"
) -> list[PathProblem]:
    """The names ``source`` reads that do not exist for ``event_types``.

    Raises ``TemplateError`` if ``source`` does not parse.
    """
    compile_template(source, name=name)
    return check_references(template_references(source, name=name), event_types)


_GUARDING_TESTS: Final = frozenset({"defined", "undefined", "none"})
_GUARDING_FILTERS: Final = frozenset({"default", "d"})


class _Finder:
    """Walks a template's syntax tree for the paths it reads."""

    def __init__(self) -> None:
        self.references: list[Reference] = []

    def visit(
        self, node: nodes.Node, scope: Mapping[str, Path | None], guarded: bool = False
    ) -> None:
        written = _chain(node)
        if written is not None:
            self._record(written, scope, guarded)
        elif isinstance(node, nodes.For):
            self._for(node, scope)
        elif isinstance(node, nodes.Test | nodes.Filter):
            self._guard(node, scope, guarded)
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
            # a method call: the receiver is read, the method name is not a field
            self.visit(node.node.node, scope, guarded)
            for child in (*node.args, *node.kwargs):
                self.visit(child, scope)
        else:
            for child in node.iter_child_nodes():
                self.visit(child, scope, guarded)

    def _record(
        self, written: Path, scope: Mapping[str, Path | None], guarded: bool
    ) -> None:
        root = str(written[0])
        if root not in scope:
            self.references.append(Reference(written, written, guarded))
            return
        base = scope[root]
        if base is not None:
            self.references.append(Reference((*base, *written[1:]), written, guarded))

    def _for(self, node: nodes.For, scope: Mapping[str, Path | None]) -> None:
        self.visit(node.iter, scope)
        written = _chain(node.iter)
        base: Path | None = None
        if written is not None:
            root = str(written[0])
            prefix = scope.get(root) if root in scope else (root,)
            base = None if prefix is None else (*prefix, *written[1:], 0)
        inner = dict(scope)
        inner["loop"] = None
        if isinstance(node.target, nodes.Name):
            inner[node.target.name] = base
        for target in node.target.find_all(nodes.Name):  # unpacked: not followed
            inner[target.name] = None
        for child in (*node.body, *node.else_):
            self.visit(child, inner)
        if node.test is not None:
            self.visit(node.test, inner)

    def _guard(
        self,
        node: nodes.Test | nodes.Filter,
        scope: Mapping[str, Path | None],
        guarded: bool,
    ) -> None:
        guards = _GUARDING_TESTS if isinstance(node, nodes.Test) else _GUARDING_FILTERS
        if node.node is not None:
            self.visit(node.node, scope, guarded or node.name in guards)
        for child in (*node.args, *node.kwargs):
            self.visit(child, scope)


def _chain(node: nodes.Node) -> Path | None:
    """The path a plain reference reads (``deal.stage.name``), or None."""
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        base = _chain(node.node)
        return None if base is None else (*base, node.attr)
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        key = node.arg.value
        base = _chain(node.node)
        if base is None or not isinstance(key, str | int) or isinstance(key, bool):
            return None
        return (*base, key)
    return None
