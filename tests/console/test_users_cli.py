"""``brokerhooks users``: add, list, set-password, remove."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result
from sqlalchemy import Engine, select

from brokerhooks.cli.base import cli
from brokerhooks.config import Settings
from brokerhooks.console.passwords import verify_password
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store.database import transaction
from brokerhooks.store.models import User
from tests.helpers import add_broker

PASSWORD = "a long enough password"


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def stored_hash(engine: Engine) -> str:
    with transaction(engine) as connection:
        value = connection.scalar(select(User.password_hash))
    assert isinstance(value, str)
    return value


def test_add_list_and_remove(settings: Settings, engine: Engine) -> None:
    add_broker(engine, Vault(settings.fernet_keys), "acme")

    user = run(
        "users", "add", "Ann@Acme.test", "--broker", "acme", stdin=PASSWORD + "\n"
    )
    admin = run("users", "add", "root@example.test", "--admin", stdin=PASSWORD + "\n")
    listed = run("users", "list", "--json")
    removed = run("users", "remove", "ann@acme.test")
    after = run("users", "list")

    assert user.exit_code == 0, user.output
    assert user.output == "Added ann@acme.test (user of broker acme).\n"
    assert admin.output == "Added root@example.test (admin).\n"
    assert [
        (u["email"], u["broker"], u["admin"]) for u in json.loads(listed.output)
    ] == [
        ("root@example.test", None, True),
        ("ann@acme.test", "acme", False),
    ]
    assert PASSWORD not in listed.output
    assert removed.output == "Removed ann@acme.test.\n"
    assert "ann@acme.test" not in after.output


def test_the_password_is_stored_as_an_argon2_hash(
    settings: Settings, engine: Engine
) -> None:
    run("users", "add", "root@example.test", "--admin", stdin=PASSWORD + "\n")

    stored = stored_hash(engine)

    assert stored.startswith("$argon2id$")
    assert verify_password(stored, Secret(PASSWORD))
    assert not verify_password(stored, Secret(PASSWORD + "x"))


def test_set_password_replaces_it(settings: Settings, engine: Engine) -> None:
    run("users", "add", "root@example.test", "--admin", stdin=PASSWORD + "\n")

    result = run(
        "users", "set-password", "root@example.test", stdin="another password\n"
    )

    assert result.exit_code == 0, result.output
    assert verify_password(stored_hash(engine), Secret("another password"))


def test_refusals_say_what_to_do(settings: Settings, engine: Engine) -> None:
    add_broker(engine, Vault(settings.fernet_keys), "acme")

    neither = run("users", "add", "ann@acme.test", stdin=PASSWORD + "\n")
    both = run("users", "add", "ann@acme.test", "--admin", "--broker", "acme")
    short = run("users", "add", "ann@acme.test", "--broker", "acme", stdin="short\n")
    unknown = run(
        "users", "add", "ann@acme.test", "--broker", "nope", stdin=PASSWORD + "\n"
    )
    run("users", "add", "ann@acme.test", "--broker", "acme", stdin=PASSWORD + "\n")
    twice = run(
        "users", "add", "ann@acme.test", "--broker", "acme", stdin=PASSWORD + "\n"
    )
    missing = run("users", "remove", "nobody@acme.test")

    assert neither.exit_code == both.exit_code == short.exit_code == 2
    assert "give --broker NAME, or --admin" in neither.output
    assert "at least 10 characters" in short.output
    assert unknown.exit_code != 0
    assert "no broker named 'nope'" in str(unknown.exception or unknown.output)
    assert "already exists" in str(twice.exception or twice.output)
    assert "no user with the email" in str(missing.exception or missing.output)
