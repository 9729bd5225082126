"""The command line: brokers and events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from brokerhooks.cli.base import cli
from brokerhooks.config import Settings
from brokerhooks.errors import Conflict, NotFound
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store.brokers import active_broker_keys
from brokerhooks.store.database import transaction
from tests.helpers import add_broker, queue_event

KEY = "cli-test-key-0f9e8d7c6b5a4f3e2d1c"


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def add(name: str = "acme", key: str = KEY, *extra: str) -> Result:
    return run(
        "brokers",
        "add",
        name,
        "--salestrekker-url",
        "https://acme.salestrekker.com/",
        *extra,
        stdin=key + "\n",
    )


def test_add_prints_id_and_webhook_url_as_json(
    settings: Settings, engine: Engine
) -> None:
    result = add("acme", KEY, "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["name"] == "acme"
    assert document["salestrekker_url"] == "https://acme.salestrekker.com"
    assert document["webhook_url"] == "http://127.0.0.1:8000/hooks/salestrekker"
    uuid.UUID(document["id"])
    assert KEY not in result.output


def test_add_stores_the_key_encrypted_with_its_lookup_hash(
    settings: Settings, engine: Engine
) -> None:
    add()

    vault = Vault(settings.fernet_keys)
    with transaction(engine) as connection:
        [key] = active_broker_keys(connection)
    assert key.name == "acme"
    assert key.api_key_hash == vault.lookup_hash(Secret(KEY))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--salestrekker-url", "acme"], "is not a URL"),
        ([], "Missing option '--salestrekker-url'"),
    ],
    ids=["bad-url", "no-url"],
)
def test_add_refuses_bad_input(
    settings: Settings, engine: Engine, args: list[str], message: str
) -> None:
    result = run("brokers", "add", "acme", *args, stdin=KEY + "\n")

    assert result.exit_code == 2
    assert message in result.output


def test_add_refuses_an_empty_key(settings: Settings, engine: Engine) -> None:
    result = add("acme", "")

    assert result.exit_code == 2
    assert "was empty" in result.output


def test_names_and_keys_are_unique(settings: Settings, engine: Engine) -> None:
    add("acme", KEY)

    same_name = add("acme", "another-key")
    same_key = add("other", KEY)

    assert isinstance(same_name.exception, Conflict)
    assert "already exists" in str(same_name.exception)
    assert isinstance(same_key.exception, Conflict)
    assert KEY not in str(same_key.exception)


def test_list_rotate_and_remove(settings: Settings, engine: Engine) -> None:
    add("acme", KEY)
    add("zenith", "zenith-key")

    listed = json.loads(run("brokers", "list", "--json").output)
    rotated = run("brokers", "rotate-key", "acme", stdin="new-key\n")
    removed = run("brokers", "remove", "zenith")
    remaining = json.loads(run("brokers", "list", "--json").output)

    assert [broker["name"] for broker in listed] == ["acme", "zenith"]
    assert rotated.exit_code == 0
    assert removed.exit_code == 0
    assert [broker["name"] for broker in remaining] == ["acme"]
    assert remaining[0]["key_rotated_at"] is not None
    vault = Vault(settings.fernet_keys)
    with transaction(engine) as connection:
        [key] = active_broker_keys(connection)
    assert key.api_key_hash == vault.lookup_hash(Secret("new-key"))


def test_remove_keeps_events_unless_purged(settings: Settings, engine: Engine) -> None:
    vault = Vault(settings.fernet_keys)
    kept = add_broker(engine, vault, "kept", api_key="k1")
    purged = add_broker(engine, vault, "purged", api_key="k2")
    kept_event = queue_event(engine, kept.id, "dealCreated", str(uuid.uuid4()))
    queue_event(engine, purged.id, "dealCreated", str(uuid.uuid4()))

    run("brokers", "remove", "kept")
    run("brokers", "remove", "purged", "--purge")
    events = json.loads(run("events", "list", "--json").output)

    assert [event["id"] for event in events] == [kept_event]
    # The name of a removed broker is free again.
    assert add("kept", "k3").exit_code == 0


def test_unknown_broker_is_not_found(settings: Settings, engine: Engine) -> None:
    result = run("brokers", "rotate-key", "nobody", stdin="k\n")

    assert isinstance(result.exception, NotFound)
    assert "brokerhooks brokers list" in str(result.exception)


def test_events_list_filters_and_show(settings: Settings, engine: Engine) -> None:
    vault = Vault(settings.fernet_keys)
    acme = add_broker(engine, vault, "acme", api_key="k1")
    other = add_broker(engine, vault, "other", api_key="k2")
    deal = str(uuid.uuid4())
    stage = queue_event(engine, acme.id, "dealChangesStage", deal)
    queue_event(engine, acme.id, "contactCreated", str(uuid.uuid4()))
    queue_event(engine, other.id, "dealChangesStage", str(uuid.uuid4()))

    by_broker = json.loads(run("events", "list", "--broker", "acme", "--json").output)
    by_type = json.loads(
        run("events", "list", "--type", "dealChangesStage", "--json").output
    )
    limited = json.loads(run("events", "list", "--limit", "1", "--json").output)
    shown = json.loads(run("events", "show", stage, "--json").output)

    assert len(by_broker) == 2
    assert {event["broker"] for event in by_type} == {"acme", "other"}
    assert len(limited) == 1
    for field in ("id", "broker", "type", "entity_id", "deal_id", "status"):
        assert field in shown
    assert shown["deal_id"] == deal
    assert shown["status"] == "received"
    assert shown["attempts"] == []
    assert shown["snapshot"] is None
    assert shown["delivery"]["body_size"] > 0
    assert "received_at" in shown


def test_replay_needs_a_selection(settings: Settings, engine: Engine) -> None:
    result = run("events", "replay")

    assert result.exit_code == 2
    assert "name event ids" in result.output


def test_replay_by_status_and_age(settings: Settings, engine: Engine) -> None:
    result = run("events", "replay", "--status", "dead", "--since", "2x")

    assert result.exit_code == 2
    assert "is not a duration" in result.output


def test_exit_codes_come_from_one_place(settings_env: dict[str, str]) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "brokerhooks", "events", "show", "nope"],
        capture_output=True,
        text=True,
        env={**os.environ, **settings_env},
    )
    bad_setting = subprocess.run(
        [sys.executable, "-m", "brokerhooks", "brokers", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, **settings_env, "BROKERHOOKS_SECRET_KEYS": "change-me"},
    )

    assert missing.returncode == 3
    assert "Error: no event with id nope" in missing.stderr
    assert bad_setting.returncode == 6
    assert "BROKERHOOKS_SECRET_KEYS" in bad_setting.stderr
