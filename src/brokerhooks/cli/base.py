"""The root command group and what every command shares."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy import Connection, Engine

from brokerhooks import __version__
from brokerhooks.config import Settings, load_settings
from brokerhooks.errors import ConfigurationError
from brokerhooks.logs import configure_logging
from brokerhooks.security.secrets import Vault
from brokerhooks.store import migrate as migrations
from brokerhooks.store.database import make_engine, transaction


class Context:
    """Settings and store, loaded on first use by a command."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            configure_logging(self._settings.log_format, self._settings.log_level)
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings)
            self._check_schema(self._engine)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def vault(self) -> Vault:
        return Vault(self.settings.fernet_keys)

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Connection]:
        with transaction(self.engine, write=write) as connection:
            yield connection

    def _check_schema(self, engine: Engine) -> None:
        if migrations.is_current(engine):
            return
        if self.settings.is_sqlite:
            migrations.upgrade(engine)
            return
        raise ConfigurationError(
            "the database schema is not up to date; run `brokerhooks migrate` "
            f"(BROKERHOOKS_DATABASE_URL={_safe_url(self.settings.database_url)})"
        )


def _safe_url(url: str) -> str:
    """The URL without its password."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


pass_context = click.make_pass_decorator(Context, ensure=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="brokerhooks")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """brokerhooks: SalesTrekker webhooks turned into finished work."""
    ctx.call_on_close(ctx.ensure_object(Context).close)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def read_secret_line(prompt: str) -> str:
    """One line from standard input (a prompt without echo on a terminal)."""
    if sys.stdin.isatty():
        value = click.prompt(prompt, hide_input=True, err=True)
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise click.UsageError(f"{prompt} was empty; pass it on standard input")
    if any(character.isspace() for character in value):
        raise click.UsageError(f"{prompt} must not contain spaces")
    return value
