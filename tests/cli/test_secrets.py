"""``brokerhooks secrets rotate`` and ``check``: every stored secret moves keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select, update

from brokerhooks.cli.base import cli
from brokerhooks.config import Settings
from brokerhooks.errors import ConfigurationError
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import connections, subscriptions, tokens
from brokerhooks.store.database import transaction
from brokerhooks.store.encrypted import ENCRYPTED_COLUMNS, rotate
from brokerhooks.store.models import Broker, M365Connection
from brokerhooks.store.types import utcnow
from tests.helpers import add_broker

API_KEY = "rotation-test-api-key-5a4b3c2d1e0f"
PLAIN = {
    "broker API keys": API_KEY,
    "SalesTrekker session tokens": "salestrekker-session-token",
    "Microsoft 365 client secrets": "m365-client-secret",
    "Microsoft 365 token caches": '{"RefreshToken": {}}',
    "Microsoft 365 sign-ins in progress": '{"state": "abc"}',
    "Graph subscription client states": "client-state-value",
}


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@dataclass
class Keys:
    old: str
    new: str

    def use(self, monkeypatch: pytest.MonkeyPatch, *keys: str) -> Vault:
        monkeypatch.setenv("BROKERHOOKS_SECRET_KEYS", ",".join(keys))
        return Vault([key.encode() for key in keys])


@pytest.fixture
def keys(settings_env: dict[str, str]) -> Keys:
    old = settings_env["BROKERHOOKS_SECRET_KEYS"]
    return Keys(old=old, new=Fernet.generate_key().decode())


def store_one_of_each(engine: Engine, vault: Vault) -> None:
    """A broker with one secret of every kind, all under ``vault``'s first key."""
    broker = add_broker(engine, vault, "acme", api_key=API_KEY)

    def seal(kind: str) -> str:
        return vault.encrypt(Secret(PLAIN[kind]))

    with transaction(engine, write=True) as connection:
        tokens.save_token(
            connection,
            broker.id,
            seal("SalesTrekker session tokens"),
            utcnow() + timedelta(hours=1),
        )
        record = connections.create_m365_connection(
            connection,
            broker_id=broker.id,
            name="office",
            kind="delegated",
            tenant_id="contoso",
            client_id="client",
            client_secret_encrypted=seal("Microsoft 365 client secrets"),
            authority_url="https://login.microsoftonline.com",
            graph_url="https://graph.microsoft.com",
            mailbox=None,
        )
        connections.save_m365_token_cache(
            connection,
            record.id,
            token_cache_encrypted=seal("Microsoft 365 token caches"),
        )
        connections.begin_m365_sign_in(
            connection,
            record.id,
            state="abc",
            auth_flow_encrypted=seal("Microsoft 365 sign-ins in progress"),
        )
        subscriptions.add_subscription(
            connection,
            broker_id=broker.id,
            connection_id=record.id,
            kind="contacts",
            resource="me/contacts",
            list_name=None,
            change_types=["created"],
            client_state_encrypted=seal("Graph subscription client states"),
        )


@pytest.fixture
def rotating(
    settings: Settings, engine: Engine, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> Vault:
    """One secret of each kind under the old key; then the new key put first."""
    store_one_of_each(engine, keys.use(monkeypatch, keys.old))
    return keys.use(monkeypatch, keys.new, keys.old)


def stored_plaintexts(engine: Engine, vault: Vault) -> dict[str, str]:
    """Every stored secret decrypted with ``vault`` (raises if one cannot be)."""
    found = {}
    with transaction(engine) as connection:
        for entry in ENCRYPTED_COLUMNS:
            token = connection.scalar(select(entry.column))
            assert token is not None, entry.kind
            found[entry.kind] = vault.decrypt(token).reveal()
    return found


def test_rotate_moves_every_kind_of_secret_to_the_first_key(
    engine: Engine, keys: Keys, rotating: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:

    before = run("secrets", "check")
    rotated = run("secrets", "rotate", "--json")
    after = run("secrets", "check")

    assert before.exit_code == 1, before.output
    assert before.output.count("1 still under an older key") == len(PLAIN)
    assert rotated.exit_code == 0, rotated.output
    report = json.loads(rotated.output)
    assert report["all_under_first_key"] is True
    assert {
        kind["kind"]: kind["reencrypted"] for kind in report["kinds"]
    } == dict.fromkeys(PLAIN, 1)
    assert after.exit_code == 0, after.output
    assert "can be removed" in after.output
    # With the old key gone, everything still reads, and the broker is still
    # found by the keyed hash of its API key.
    new_only = keys.use(monkeypatch, keys.new)
    assert stored_plaintexts(engine, new_only) == PLAIN
    with transaction(engine) as connection:
        stored_hash = connection.scalar(select(Broker.api_key_hash))
    assert stored_hash == new_only.lookup_hash(Secret(API_KEY))
    for output in (before.output, rotated.output, after.output):
        for plain in PLAIN.values():
            assert plain not in output


def test_rotate_again_changes_nothing(engine: Engine, rotating: Vault) -> None:
    run("secrets", "rotate")
    with transaction(engine) as connection:
        first = connection.execute(select(M365Connection.token_cache_encrypted)).one()

    again = run("secrets", "rotate", "--json")

    with transaction(engine) as connection:
        second = connection.execute(select(M365Connection.token_cache_encrypted)).one()
    assert again.exit_code == 0
    assert [kind["reencrypted"] for kind in json.loads(again.output)["kinds"]] == [
        0
    ] * len(PLAIN)
    assert first == second


def test_a_secret_no_key_reads_is_reported_and_the_rest_rotated(
    engine: Engine, keys: Keys, rotating: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    stranger = Vault([Fernet.generate_key()])
    lost = stranger.encrypt(Secret("lost-secret"))
    with transaction(engine, write=True) as connection:
        connection.execute(update(M365Connection).values(client_secret_encrypted=lost))
        connection_id = connection.scalar(select(M365Connection.id))

    result = run("secrets", "rotate")

    assert result.exit_code == 1
    assert (
        f"Microsoft 365 client secrets: 1 stored, 0 re-encrypted, 1 readable by no "
        f"configured key ({connection_id})" in result.output
    )
    assert "Microsoft 365 token caches: 1 stored, 1 re-encrypted" in result.output
    with transaction(engine) as connection:
        assert connection.scalar(select(M365Connection.client_secret_encrypted)) == lost
    with pytest.raises(ConfigurationError):
        stored_plaintexts(engine, keys.use(monkeypatch, keys.new))


def test_a_token_cache_saved_meanwhile_is_not_overwritten(
    engine: Engine, keys: Keys, rotating: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that saves a newer cache between the read and the write wins."""
    old_vault = Vault([keys.old.encode()])
    both = rotating
    newer = old_vault.encrypt(Secret('{"RefreshToken": {"newer": true}}'))
    real_reencrypt = both.reencrypt
    saved: list[bool] = []

    with transaction(engine) as connection:
        cache_before = connection.scalar(select(M365Connection.token_cache_encrypted))

    with transaction(engine, write=True) as connection:

        def reencrypt_after_a_save(token: str) -> str:
            if not saved and token == cache_before:
                # The row changes between rotate's read and its write, as if
                # a worker saved its cache (still under the old key) just then.
                connection.execute(
                    update(M365Connection).values(token_cache_encrypted=newer)
                )
                saved.append(True)
            return real_reencrypt(token)

        monkeypatch.setattr(both, "reencrypt", reencrypt_after_a_save)
        reports = rotate(connection, both)

    assert saved
    caches = {report.kind: report for report in reports}
    assert caches["Microsoft 365 token caches"].reencrypted == 1
    plain = stored_plaintexts(engine, keys.use(monkeypatch, keys.new))
    assert plain["Microsoft 365 token caches"] == '{"RefreshToken": {"newer": true}}'


def test_the_command_exits_with_1_while_a_secret_is_under_an_older_key(
    engine: Engine, keys: Keys, rotating: Vault, settings_env: dict[str, str]
) -> None:
    """Through the real entry point, which runs click outside standalone mode."""

    def check(*secret_keys: str) -> int:
        env = {
            **os.environ,
            **settings_env,
            "BROKERHOOKS_SECRET_KEYS": ",".join(secret_keys),
        }
        command = [sys.executable, "-m", "brokerhooks", "secrets"]
        return subprocess.run(
            [*command, "check"], capture_output=True, env=env, check=False
        ).returncode

    before = check(keys.new, keys.old)
    run("secrets", "rotate")
    after = check(keys.new)

    assert (before, after) == (1, 0)
