"""``brokerhooks rules``: validate, load, list, enable, disable, back-test."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from brokerhooks.cli.base import Context, echo_json, pass_context
from brokerhooks.pipeline.backtest import backtest
from brokerhooks.pipeline.rulebook import save_rule_source, split_rule_file
from brokerhooks.rules.engine import describe
from brokerhooks.rules.errors import InvalidRules
from brokerhooks.rules.recipes import RECIPES, get_recipe
from brokerhooks.rules.validate import load_rules, validate_rules
from brokerhooks.store import rules as store
from brokerhooks.store.brokers import get_broker
from brokerhooks.store.connections import list_m365_connections
from brokerhooks.store.types import utcnow
from brokerhooks.timeparse import parse_duration

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


def _since(_ctx: click.Context, _param: click.Parameter, value: str) -> datetime:
    try:
        return utcnow() - parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _show_errors(invalid: InvalidRules) -> None:
    for error in invalid.errors:
        click.echo(error.located(), err=True)
    raise click.exceptions.Exit(1)


@click.group()
def rules() -> None:
    """Rules: what each broker's events turn into."""


@rules.command("validate")
@click.argument("file", type=FILE)
def validate(file: Path) -> None:
    """Check a rule file; print every problem with its fix (exit 1 if any)."""
    errors = validate_rules(file.read_text(), source_name=str(file))
    for error in errors:
        click.echo(error.located(), err=True)
    if errors:
        raise click.exceptions.Exit(1)
    click.echo(f"{file}: valid")


@rules.command("load")
@click.argument("file", type=FILE)
@click.option("--broker", "broker_name", required=True)
@click.option("--replace", is_flag=True, help="Delete the broker's rules not in FILE.")
@pass_context
def load(context: Context, file: Path, broker_name: str, replace: bool) -> None:
    """Check FILE and save its rules for a broker (same id: replaced)."""
    with context.transaction(write=True) as connection:
        broker = get_broker(connection, broker_name)
        names = [c.name for c in list_m365_connections(connection, broker_id=broker.id)]
        try:
            sources = split_rule_file(
                file.read_text(), source_name=str(file), connections=names
            )
        except InvalidRules as invalid:
            _show_errors(invalid)
            return
        added = 0
        for source in sources:
            added += save_rule_source(connection, broker.id, source)
        removed = 0
        if replace:
            kept = {source.rule_id for source in sources}
            for stored in store.list_rules(connection, broker.id):
                if stored.rule_id not in kept:
                    store.delete_rule(connection, broker.id, stored.rule_id)
                    removed += 1
    click.echo(
        f"{broker_name}: {added} rule(s) added, {len(sources) - added} replaced"
        + (f", {removed} removed" if replace else "")
    )


@rules.command("list")
@click.option("--broker", "broker_name", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def list_(context: Context, broker_name: str, as_json: bool) -> None:
    """List a broker's rules."""
    with context.transaction() as connection:
        broker = get_broker(connection, broker_name)
        stored = store.list_rules(connection, broker.id)
    if as_json:
        echo_json(
            [
                {
                    "id": rule.rule_id,
                    "name": rule.name,
                    "enabled": rule.enabled,
                    "updated_at": rule.updated_at.isoformat(),
                    "source": rule.source,
                }
                for rule in stored
            ]
        )
        return
    if not stored:
        click.echo(
            f"{broker_name} has no rules; add some with `brokerhooks rules load`."
        )
    for rule in stored:
        state = "enabled " if rule.enabled else "disabled"
        click.echo(f"{state}  {rule.rule_id:<30} {rule.name or ''}")


def _toggle(context: Context, broker_name: str, rule_id: str, enabled: bool) -> None:
    with context.transaction(write=True) as connection:
        broker = get_broker(connection, broker_name)
        store.set_enabled(connection, broker.id, rule_id, enabled)
    click.echo(f"{rule_id}: {'enabled' if enabled else 'disabled'}")


@rules.command("enable")
@click.argument("rule_id")
@click.option("--broker", "broker_name", required=True)
@pass_context
def enable(context: Context, rule_id: str, broker_name: str) -> None:
    """Enable a rule."""
    _toggle(context, broker_name, rule_id, True)


@rules.command("disable")
@click.argument("rule_id")
@click.option("--broker", "broker_name", required=True)
@pass_context
def disable(context: Context, rule_id: str, broker_name: str) -> None:
    """Disable a rule (its scheduled steps still run; replays skip it)."""
    _toggle(context, broker_name, rule_id, False)


@rules.command("test")
@click.argument("file", type=FILE)
@click.option("--broker", "broker_name", required=True)
@click.option("--since", default="30d", show_default=True, callback=_since)
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1))
@click.option(
    "--all", "show_all", is_flag=True, help="Also show events no rule fired on."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_context
def test(
    context: Context,
    file: Path,
    broker_name: str,
    since: datetime,
    limit: int,
    show_all: bool,
    as_json: bool,
) -> None:
    """Back-test: what FILE's rules would have done with stored events.

    Nothing is performed: each processed event is evaluated again with the
    snapshots and changes it had.
    """
    try:
        rule_file = load_rules(file.read_text(), source_name=str(file))
    except InvalidRules as invalid:
        _show_errors(invalid)
        return
    with context.transaction() as connection:
        broker = get_broker(connection, broker_name)
        report = backtest(
            connection,
            broker,
            rule_file.rules,
            since=since,
            limit=limit,
            timezone=context.settings.timezone,
        )
    if as_json:
        echo_json(
            [
                {
                    "event": entry.event.id,
                    "type": entry.event.type,
                    "received_at": entry.event.received_at.isoformat(),
                    "runs": [
                        v.decision.as_trace() if v.decision else {"error": v.error}
                        for v in entry.verdicts
                    ],
                }
                for entry in report.entries
            ]
        )
        return
    for entry in report.entries:
        if not show_all and not entry.fired:
            continue
        event = entry.event
        click.echo(
            f"event {event.id} {event.type} at {event.received_at:%Y-%m-%d %H:%M}"
        )
        for verdict in entry.verdicts:
            text = describe(verdict.decision) if verdict.decision else verdict.error
            click.echo("  " + (text or "").replace("\n", "\n  "))
    click.echo(
        f"{len(report.entries)} event(s) since {since:%Y-%m-%d %H:%M} UTC; "
        f"rules fired {report.fired} time(s); nothing was performed."
    )


@rules.command("recipes")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def recipes(as_json: bool) -> None:
    """List the ready rules and their parameters."""
    if as_json:
        echo_json(
            [
                {
                    "id": recipe.id,
                    "title": recipe.title,
                    "description": recipe.description,
                    "params": [
                        {
                            "name": p.name,
                            "description": p.description,
                            "default": p.default,
                        }
                        for p in recipe.params
                    ],
                }
                for recipe in RECIPES.values()
            ]
        )
        return
    for recipe in RECIPES.values():
        click.echo(f"{recipe.id}: {recipe.title}")
        for param in recipe.params:
            default = (
                f" (default: {param.default})" if param.default is not None else ""
            )
            click.echo(f"    {param.name}: {param.description}{default}")


def _assignments(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str]:
    parsed = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} is not NAME=VALUE")
        parsed[name.strip()] = text
    return parsed


@rules.command("add-recipe")
@click.argument("recipe_id")
@click.option("--broker", "broker_name", required=True)
@click.option(
    "--set",
    "values",
    multiple=True,
    callback=_assignments,
    help="A parameter, NAME=VALUE (repeatable).",
)
@click.option(
    "--print", "only_print", is_flag=True, help="Print the rule; save nothing."
)
@pass_context
def add_recipe(
    context: Context,
    recipe_id: str,
    broker_name: str,
    values: dict[str, str],
    only_print: bool,
) -> None:
    """Fill a recipe's parameters and save the rule for a broker."""
    try:
        text = get_recipe(recipe_id).render(values)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    if only_print:
        click.echo(text)
        return
    with context.transaction(write=True) as connection:
        broker = get_broker(connection, broker_name)
        names = [c.name for c in list_m365_connections(connection, broker_id=broker.id)]
        try:
            [source] = split_rule_file(
                text, source_name=f"recipe {recipe_id}", connections=names
            )
        except InvalidRules as invalid:
            _show_errors(invalid)
            return
        save_rule_source(connection, broker.id, source)
    click.echo(f"{broker_name}: rule {source.rule_id} saved from recipe {recipe_id}")
