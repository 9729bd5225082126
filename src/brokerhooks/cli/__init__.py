"""The command line: ``brokerhooks``.

Errors are turned into messages and exit codes in one place, ``main``:

====  ==========================================
code  meaning
====  ==========================================
0     done
1     a failure not listed below
2     wrong usage (click's own)
3     not found (broker, event)
4     conflict (name or key already taken)
5     the store cannot be reached
6     a setting is missing or invalid
====  ==========================================
"""

from __future__ import annotations

import sys

import click

from brokerhooks.cli.base import cli
from brokerhooks.cli.brokers import brokers
from brokerhooks.cli.connections import connections
from brokerhooks.cli.events import events
from brokerhooks.cli.rules import rules
from brokerhooks.cli.salestrekker import salestrekker
from brokerhooks.cli.secrets import secrets
from brokerhooks.cli.serve import demo, migrate, serve, worker
from brokerhooks.cli.simulators import simulate, simulators
from brokerhooks.cli.subscriptions import subscriptions
from brokerhooks.cli.tokens import tokens
from brokerhooks.cli.users import users
from brokerhooks.errors import (
    BrokerhooksError,
    ConfigurationError,
    Conflict,
    NotFound,
    StoreUnavailable,
)

EXIT_CODES: dict[type[BrokerhooksError], int] = {
    NotFound: 3,
    Conflict: 4,
    StoreUnavailable: 5,
    ConfigurationError: 6,
}

for command in (
    brokers,
    connections,
    events,
    rules,
    secrets,
    serve,
    migrate,
    worker,
    demo,
    salestrekker,
    simulators,
    simulate,
    subscriptions,
    tokens,
    users,
):
    cli.add_command(command)


def main() -> None:
    try:
        # Without standalone mode, click returns the code of a command that
        # raised click.exceptions.Exit instead of exiting with it.
        code = cli.main(standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except BrokerhooksError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(EXIT_CODES.get(type(error), 1))
    except KeyboardInterrupt:
        sys.exit(130)
