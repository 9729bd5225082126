"""SubscriptionService against the simulator, and the commands that call it.

brokerhooks is served over loopback HTTP, so that the simulator's
validation handshakes and notifications reach its real endpoints; Graph
calls go to the simulator in-process, msal to its identity provider over
HTTPS.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from brokerhooks.app import create_app
from brokerhooks.cli.base import cli
from brokerhooks.config import Settings
from brokerhooks.connectors.msgraph.auth import graph_client
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.connectors.msgraph.errors import GraphRequestError
from brokerhooks.connectors.msgraph.subscriptions import (
    EXPIRY_MARGIN,
    SubscriptionService,
    renew_at,
)
from brokerhooks.errors import ConfigurationError, Conflict
from brokerhooks.ingest.msgraph_events import RESOURCE_KINDS
from brokerhooks.runtime import Runtime
from brokerhooks.security.secrets import Vault
from brokerhooks.simulators.msgraph import (
    LoopbackCertificates,
    MicrosoftGraphSimulator,
)
from brokerhooks.store import subscriptions as store
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.connections import M365ConnectionRecord, mark_m365_connected
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Delivery, Event, Job
from brokerhooks.store.subscriptions import SubscriptionRecord
from brokerhooks.store.types import utcnow
from tests.connectors.msgraph.conftest import ANN, add_connection
from tests.servers import free_port, serve_in_thread

pytestmark = pytest.mark.anyio


@dataclass
class Setup:
    url: str
    settings: Settings
    engine: Engine
    vault: Vault
    sim: MicrosoftGraphSimulator
    connection: M365ConnectionRecord
    service: SubscriptionService

    def get(self, subscription_id: str) -> SubscriptionRecord:
        with transaction(self.engine) as connection:
            return store.get_subscription(connection, subscription_id)

    def jobs(self) -> list[tuple[str | None, datetime]]:
        with transaction(self.engine) as connection:
            rows = connection.execute(
                select(Job.ref, Job.run_after).where(Job.kind == store.SUBSCRIPTION_JOB)
            ).all()
        return [(row.ref, row.run_after) for row in rows]

    def events(self) -> list[tuple[str, str]]:
        with transaction(self.engine) as connection:
            rows = connection.execute(
                select(Event.type, Event.entity_id).order_by(Event.id)
            ).all()
        return [(row.type, row.entity_id) for row in rows]


@pytest.fixture
def setup(
    settings: Settings,
    engine: Engine,
    vault: Vault,
    broker: BrokerRecord,
    sim: MicrosoftGraphSimulator,
    authority_url: str,
) -> Iterator[Setup]:
    runtime = Runtime.build(settings, engine)
    connection = add_connection(
        engine,
        vault,
        broker,
        authority_url,
        kind="app_only",
        name="office",
        mailbox=ANN,
    )
    with transaction(engine, write=True) as db:
        mark_m365_connected(db, connection.id)
    with serve_in_thread(create_app(settings, runtime)) as url:
        public = settings.model_copy(update={"public_url": url})
        yield Setup(
            url,
            public,
            engine,
            vault,
            sim,
            connection,
            SubscriptionService(engine, vault, public, transport=sim.transport()),
        )


def close_to(moment: object, expected: object, seconds: float = 60) -> bool:
    assert isinstance(moment, datetime)
    assert isinstance(expected, datetime)
    return abs(moment.timestamp() - expected.timestamp()) < seconds


# Creating.


@pytest.mark.parametrize("kind", list(RESOURCE_KINDS))
async def test_subscribing_asks_graph_for_the_longest_life_and_queues_renewal(
    setup: Setup, kind: str
) -> None:
    asked_at = utcnow()
    record = await setup.service.subscribe(setup.connection.id, kind)

    resource_kind = RESOURCE_KINDS[kind]
    [at_graph] = setup.sim.active_subscriptions()
    assert record.status == "active"
    assert record.graph_subscription_id == at_graph.id
    assert at_graph.notification_url == setup.url + "/hooks/msgraph"
    assert at_graph.lifecycle_url == setup.url + "/hooks/msgraph/lifecycle"
    assert at_graph.change_types == resource_kind.change_types
    assert record.expires_at is not None
    assert close_to(
        record.expires_at, asked_at + resource_kind.max_lifetime - EXPIRY_MARGIN
    )
    [(ref, run_after)] = setup.jobs()
    assert ref == f"renew:{record.id}"
    assert run_after == renew_at(resource_kind, record.expires_at)
    assert run_after < record.expires_at - timedelta(hours=30)
    assert record.delta_link is not None  # where a resynchronisation starts


async def test_the_client_state_is_random_encrypted_and_what_graph_echoes(
    setup: Setup,
) -> None:
    first = await setup.service.subscribe(setup.connection.id, "inbox")
    second = await setup.service.subscribe(setup.connection.id, "calendar")

    states = {}
    for record in (first, second):
        with transaction(setup.engine) as connection:
            encrypted = store.client_state_of(connection, record.id)
        states[record.graph_subscription_id] = setup.vault.decrypt(encrypted).reveal()
        assert states[record.graph_subscription_id] not in encrypted
    for at_graph in setup.sim.active_subscriptions():
        assert at_graph.client_state == states[at_graph.id]
    assert len(set(states.values())) == 2
    assert all(32 <= len(state) <= 128 for state in states.values())


async def test_a_todo_subscription_watches_the_named_list(setup: Setup) -> None:
    record = await setup.service.subscribe(
        setup.connection.id, "todo", list_name="Deals"
    )

    [deals] = [
        found for found in setup.sim.task_lists(ANN) if found["displayName"] == "Deals"
    ]
    assert record.resource == f"users/{ANN}/todo/lists/{deals['id']}/tasks"
    assert record.list_name == "Deals"


async def test_a_failed_handshake_leaves_nothing_behind(setup: Setup) -> None:
    unreachable = setup.settings.model_copy(
        update={"public_url": f"http://127.0.0.1:{free_port()}"}
    )
    service = SubscriptionService(
        setup.engine, setup.vault, unreachable, transport=setup.sim.transport()
    )

    with pytest.raises(GraphRequestError, match="validation request failed"):
        await service.subscribe(setup.connection.id, "inbox")

    with transaction(setup.engine) as connection:
        assert store.list_subscriptions(connection) == []
    assert setup.sim.active_subscriptions() == []


async def test_a_public_url_graph_cannot_use_is_refused_up_front(
    setup: Setup,
) -> None:
    plain = setup.settings.model_copy(update={"public_url": "http://hooks.example.com"})
    service = SubscriptionService(setup.engine, setup.vault, plain)

    with pytest.raises(ConfigurationError, match="BROKERHOOKS_PUBLIC_URL"):
        await service.subscribe(setup.connection.id, "inbox")


async def test_a_resource_is_watched_once_per_connection(setup: Setup) -> None:
    await setup.service.subscribe(setup.connection.id, "inbox")

    with pytest.raises(Conflict, match="already has a inbox subscription"):
        await setup.service.subscribe(setup.connection.id, "inbox")


async def test_change_types_a_resource_does_not_take_are_refused(
    setup: Setup,
) -> None:
    with pytest.raises(ValueError, match="drive subscriptions take updated"):
        await setup.service.subscribe(
            setup.connection.id, "drive", change_types=("created",)
        )


# Renewing and recreating.


async def test_renewing_extends_the_subscription_at_graph(setup: Setup) -> None:
    record = await setup.service.subscribe(setup.connection.id, "inbox")
    [before] = setup.sim.active_subscriptions()
    setup.sim.subscriptions[before.id].expires_at -= 3600

    renewed = await setup.service.renew(record.id)

    [after] = setup.sim.active_subscriptions()
    assert after.id == before.id
    assert after.expires_at > before.expires_at - 3600
    assert renewed.renewed_at is not None
    assert renewed.status == "active"


async def test_a_subscription_graph_lost_is_recreated_and_resynchronised(
    setup: Setup,
) -> None:
    record = await setup.service.subscribe(setup.connection.id, "inbox")
    old_state = setup.sim.active_subscriptions()[0].client_state
    setup.sim.expire_subscription(str(record.graph_subscription_id))
    missed = await setup.sim.deliver_mail(ANN, sender="a@example.com", subject="Gap")

    renewed = await setup.service.renew(record.id)

    [now] = setup.sim.active_subscriptions()
    assert renewed.graph_subscription_id == now.id != record.graph_subscription_id
    assert now.client_state != old_state
    assert setup.events() == [("messageCreated", missed["id"])]


# Resynchronising.


async def test_missed_changes_are_found_by_a_delta_query_once(setup: Setup) -> None:
    record = await setup.service.subscribe(setup.connection.id, "inbox")
    first = await setup.sim.deliver_mail(
        ANN, sender="a@example.com", subject="One", notify=False
    )
    second = await setup.sim.deliver_mail(
        ANN, sender="b@example.com", subject="Two", notify=False
    )

    found = await setup.service.resync(record.id, reason="test")
    again = await setup.service.resync(record.id, reason="test")

    assert (found.events, again.events) == (2, 0)
    assert setup.events() == [
        ("messageCreated", first["id"]),
        ("messageCreated", second["id"]),
    ]
    with transaction(setup.engine) as connection:
        [delivery] = connection.execute(
            select(Delivery.__table__).where(Delivery.outcome == "resync")
        ).all()
    assert delivery.source == "msgraph"
    assert "2 event(s)" in delivery.reason


async def test_an_expired_delta_link_starts_again_and_says_so(setup: Setup) -> None:
    record = await setup.service.subscribe(setup.connection.id, "inbox")
    await setup.sim.deliver_mail(ANN, sender="a@example.com", subject="x", notify=False)
    setup.sim.expire_delta_tokens()

    result = await setup.service.resync(record.id, reason="test")

    assert (result.events, result.delta_link_expired) == (0, True)
    stored = setup.get(record.id)
    assert stored.status == "failing"
    assert "delta link had expired" in str(stored.last_error)
    assert stored.delta_link != record.delta_link


async def test_drive_changes_become_one_event_per_item(setup: Setup) -> None:
    record = await setup.service.subscribe(setup.connection.id, "drive")
    async with _client(setup) as client:
        await client.ensure_folder("Clients")
        uploaded = await client.upload_file("Clients", "payslips.pdf", b"%PDF")

    await setup.service.resync(record.id, reason="test")

    assert ("driveItemChanged", uploaded["id"]) in setup.events()
    assert all(kind == "driveItemChanged" for kind, _ in setup.events())


def _client(setup: Setup) -> AbstractAsyncContextManager[GraphClient]:
    return graph_client(
        setup.engine, setup.vault, setup.connection.id, transport=setup.sim.transport()
    )


# Removing.


async def test_unsubscribing_deletes_at_graph_and_here(setup: Setup) -> None:
    record = await setup.service.subscribe(setup.connection.id, "inbox")

    await setup.service.unsubscribe(record.id)

    assert setup.sim.active_subscriptions() == []
    with transaction(setup.engine) as connection:
        assert store.find_subscription(connection, record.id) is None


async def test_a_connection_going_away_takes_its_subscriptions(setup: Setup) -> None:
    await setup.service.subscribe(setup.connection.id, "inbox")
    await setup.service.subscribe(setup.connection.id, "calendar")
    [gone_already, _] = setup.sim.active_subscriptions()
    setup.sim.expire_subscription(gone_already.id)

    problems = await setup.service.unsubscribe_connection(setup.connection.id)

    assert problems == []
    assert setup.sim.active_subscriptions() == []
    with transaction(setup.engine) as connection:
        assert store.list_subscriptions(connection) == []


# The command line.


@pytest.fixture
def cli_env(
    setup: Setup,
    monkeypatch: pytest.MonkeyPatch,
    certificates: LoopbackCertificates,
) -> None:
    """The CLI reaches the simulated Graph over HTTPS, like the real one."""
    monkeypatch.setenv("BROKERHOOKS_PUBLIC_URL", setup.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca_path))


@pytest.mark.usefixtures("cli_env")
def test_subscribe_list_and_unsubscribe_from_the_command_line(setup: Setup) -> None:
    subscribed = CliRunner().invoke(
        cli,
        [
            "connections", "m365", "subscribe", "office", "--broker", "acme",
            "--resource", "todo", "--list", "Deals", "--json",
        ],
    )  # fmt: skip
    listed = CliRunner().invoke(cli, ["subscriptions", "list", "--json"])
    unsubscribed = CliRunner().invoke(
        cli,
        [
            "connections", "m365", "unsubscribe", "office", "--broker", "acme",
            "--resource", "todo",
        ],
    )  # fmt: skip

    assert subscribed.exit_code == 0, subscribed.output
    shown = json.loads(subscribed.stdout)
    assert (shown["resource_kind"], shown["list"], shown["status"]) == (
        "todo",
        "Deals",
        "active",
    )
    assert "client" not in json.dumps(shown).lower().replace("client_", "")
    assert [row["id"] for row in json.loads(listed.stdout)] == [shown["id"]]
    assert unsubscribed.exit_code == 0, unsubscribed.output
    assert setup.sim.active_subscriptions() == []


@pytest.mark.usefixtures("cli_env")
def test_removing_a_connection_deletes_its_subscriptions(setup: Setup) -> None:
    subscribed = CliRunner().invoke(
        cli,
        [
            "connections", "m365", "subscribe", "office", "--broker", "acme",
            "--resource", "inbox",
        ],
    )  # fmt: skip
    removed = CliRunner().invoke(
        cli, ["connections", "m365", "remove", "office", "--broker", "acme"]
    )

    assert subscribed.exit_code == 0, subscribed.output
    assert removed.exit_code == 0, removed.output
    assert setup.sim.active_subscriptions() == []
    with transaction(setup.engine) as connection:
        assert store.list_subscriptions(connection) == []


@pytest.mark.usefixtures("cli_env")
def test_renewal_dates_show_in_the_list(setup: Setup) -> None:
    CliRunner().invoke(
        cli,
        [
            "connections", "m365", "subscribe", "office", "--broker", "acme",
            "--resource", "drive",
        ],
    )  # fmt: skip

    listed = CliRunner().invoke(cli, ["subscriptions", "list"])

    assert listed.exit_code == 0, listed.output
    assert "\tdrive\tactive\texpires " in listed.output
