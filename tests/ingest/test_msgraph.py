"""The Microsoft Graph notification endpoints, over real HTTP, on the real store.

Subscriptions are stored directly (the service that creates them at Graph
is tested with the simulator elsewhere); notifications are posted as Graph
posts them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import Engine, select, update

from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.logs import configure_logging
from brokerhooks.runtime import Runtime
from brokerhooks.security.secrets import Secret, Vault
from brokerhooks.store import connections
from brokerhooks.store import subscriptions as store
from brokerhooks.store.database import transaction
from brokerhooks.store.models import (
    Delivery,
    Event,
    GraphNotificationKey,
    Job,
)
from brokerhooks.store.subscriptions import SubscriptionRecord
from brokerhooks.store.types import utcnow
from tests.helpers import add_broker
from tests.servers import serve_in_thread

CLIENT_STATE = "kY3v9-known-only-to-brokerhooks-and-graph-Qm2x"
MESSAGE_ID = "AAMkAGI2TG93AAA=" + "x" * 130
TENANT = "9b1f2c3d-0000-4000-8000-00000000c0de"


def add_subscription(
    engine: Engine,
    vault: Vault,
    broker_id: str,
    *,
    kind: str = "inbox",
    client_state: str = CLIENT_STATE,
    graph_id: str | None = None,
    connection_name: str = "office",
) -> SubscriptionRecord:
    """An active subscription as the service leaves one, without Graph."""
    with transaction(engine, write=True) as db:
        found = [
            c
            for c in connections.list_m365_connections(db, broker_id=broker_id)
            if c.name == connection_name
        ]
        connection = (
            found[0]
            if found
            else _add_connection(db, vault, broker_id, connection_name)
        )
        record = store.add_subscription(
            db,
            broker_id=broker_id,
            connection_id=connection.id,
            kind=kind,
            resource=f"users/ann/{kind}",
            list_name=None,
            change_types=("created", "updated", "deleted"),
            client_state_encrypted=vault.encrypt(Secret(client_state)),
        )
        if graph_id != "":
            store.activate(
                db,
                record.id,
                graph_subscription_id=graph_id or str(uuid.uuid4()),
                client_state_encrypted=vault.encrypt(Secret(client_state)),
                expires_at=utcnow() + timedelta(days=2),
                delta_link=None,
            )
        return store.get_subscription(db, record.id)


def _add_connection(
    db: Any, vault: Vault, broker_id: str, name: str
) -> connections.M365ConnectionRecord:
    return connections.create_m365_connection(
        db,
        broker_id=broker_id,
        name=name,
        kind="app_only",
        tenant_id=TENANT,
        client_id="client",
        client_secret_encrypted=vault.encrypt(Secret("secret")),
        authority_url="https://login.test",
        graph_url="https://graph.test",
        mailbox="ann@contoso.test",
    )


def notification(
    subscription: SubscriptionRecord,
    *,
    client_state: str | None = CLIENT_STATE,
    change: str = "created",
    item_id: str = MESSAGE_ID,
    etag: str | None = 'W/"CQAAABYAAAD"',
    **extra: Any,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "subscriptionId": subscription.graph_subscription_id,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "changeType": change,
        "resource": f"Users/ann/Messages/{item_id}",
        "tenantId": TENANT,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": f"Users/ann/Messages/{item_id}",
            "id": item_id,
        },
        **extra,
    }
    if etag is not None:
        item["resourceData"]["@odata.etag"] = etag
    if client_state is not None:
        item["clientState"] = client_state
    return item


@dataclass
class Service:
    url: str
    runtime: Runtime
    engine: Engine
    broker_id: str

    def post(
        self,
        *items: dict[str, Any],
        path: str = "/hooks/msgraph",
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        method: str = "POST",
    ) -> httpx.Response:
        if content is None:
            content = json.dumps({"value": list(items)}).encode()
        return httpx.request(
            method,
            self.url + path,
            content=content,
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def subscription(self, **options: Any) -> SubscriptionRecord:
        return add_subscription(
            self.engine, self.runtime.vault, self.broker_id, **options
        )

    def events(self) -> list[Any]:
        with transaction(self.engine) as connection:
            return list(
                connection.execute(select(Event.__table__).order_by(Event.id)).all()
            )

    def jobs(self) -> list[tuple[str, str | None]]:
        with transaction(self.engine) as connection:
            rows = connection.execute(select(Job.kind, Job.ref).order_by(Job.id)).all()
        return [(row.kind, row.ref) for row in rows]

    def deliveries(self) -> list[Any]:
        for _ in range(100):
            if not self.runtime.writer._pending:
                break
            httpx.get(self.url + "/healthz")
        httpx.get(self.url + "/healthz")
        with transaction(self.engine) as connection:
            return list(
                connection.execute(
                    select(Delivery.__table__).order_by(Delivery.received_at)
                ).all()
            )


@pytest.fixture
def service(settings: Settings, engine: Engine) -> Iterator[Service]:
    runtime = Runtime.build(settings, engine)
    broker = add_broker(engine, runtime.vault)
    with serve_in_thread(create_app(settings, runtime)) as url:
        yield Service(url, runtime, engine, broker.id)


# The handshake.


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize(
    "path", ["/hooks/msgraph", "/hooks/msgraph/lifecycle"], ids=["hook", "lifecycle"]
)
def test_the_validation_token_is_echoed_decoded_as_plain_text(
    service: Service, method: str, path: str
) -> None:
    token = "Validation: Testing client application reachability <b>&</b>"

    response = httpx.request(
        method,
        f"{service.url}{path}?validationToken={quote(token)}",
        headers={"Content-Type": "text/plain; charset=utf-8"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text == token
    [delivery] = service.deliveries()
    assert (delivery.outcome, delivery.status_code) == ("validation", 200)


def test_an_oversized_token_is_refused(service: Service) -> None:
    response = service.post(
        content=b"", headers={}, path="/hooks/msgraph?validationToken=" + "a" * 3000
    )

    assert response.status_code == 400


# Notifications.


def test_a_valid_notification_is_stored_as_an_event_before_the_202(
    service: Service,
) -> None:
    subscription = service.subscription()

    response = service.post(notification(subscription))

    assert response.status_code == 202
    [event] = service.events()
    assert (event.source, event.type, event.status) == (
        "msgraph",
        "messageCreated",
        "received",
    )
    assert event.entity_id == MESSAGE_ID
    assert event.deal_id is None
    payload = json.loads(event.payload)
    assert payload["subscription"] == subscription.id
    assert payload["notification"]["resourceData"]["id"] == MESSAGE_ID
    assert "clientState" not in payload["notification"]
    assert CLIENT_STATE not in event.payload
    assert service.jobs() == [("process_event", None)]
    [delivery] = service.deliveries()
    assert (delivery.outcome, delivery.status_code, delivery.event_id) == (
        "accepted",
        202,
        event.id,
    )
    assert delivery.broker_id == service.broker_id


@pytest.mark.parametrize(
    ("client_state", "reason"),
    [
        ("forged-" + CLIENT_STATE, "with a wrong clientState"),
        (CLIENT_STATE[:-1], "with a wrong clientState"),
        (None, "without clientState"),
        ("", "without clientState"),
    ],
    ids=["forged", "truncated", "missing", "empty"],
)
def test_a_notification_with_a_wrong_or_missing_client_state_is_rejected(
    service: Service, client_state: str | None, reason: str
) -> None:
    subscription = service.subscription()

    response = service.post(notification(subscription, client_state=client_state))

    assert response.status_code == 202  # the same answer as for a valid one
    assert service.events() == []
    assert service.jobs() == []
    [delivery] = service.deliveries()
    assert delivery.outcome == "rejected"
    assert delivery.reason == f"1 {reason}"
    assert delivery.event_id is None


def test_a_notification_for_an_unknown_subscription_is_rejected(
    service: Service,
) -> None:
    subscription = service.subscription()
    stranger = notification(subscription) | {"subscriptionId": str(uuid.uuid4())}

    service.post(stranger)

    assert service.events() == []
    [delivery] = service.deliveries()
    assert delivery.reason == "1 for an unknown subscription"


def test_in_a_batch_only_the_valid_notifications_are_stored(
    service: Service,
) -> None:
    ours = service.subscription()
    theirs = service.subscription(
        kind="calendar", client_state="another-state", connection_name="other"
    )
    batch = [
        notification(ours),
        notification(ours, client_state="guess", item_id="B" * 40),
        notification(
            theirs, client_state="another-state", item_id="C" * 40, change="updated"
        ),
        {"no": "subscription"},
    ]

    response = service.post(*batch)

    assert response.status_code == 202
    assert [(e.type, e.entity_id) for e in service.events()] == [
        ("messageCreated", MESSAGE_ID),
        ("eventUpdated", "C" * 40),
    ]
    [delivery] = service.deliveries()
    assert delivery.outcome == "accepted"
    assert delivery.reason == "2 stored, 1 with a wrong clientState, 1 malformed"


def test_graphs_repeats_are_stored_once(service: Service) -> None:
    subscription = service.subscription()
    sent = notification(subscription)

    first = service.post(sent)
    again = service.post(sent)
    twice_in_one = service.post(sent, sent)

    assert [r.status_code for r in (first, again, twice_in_one)] == [202, 202, 202]
    assert len(service.events()) == 1
    assert [d.outcome for d in service.deliveries()] == [
        "accepted",
        "duplicate",
        "duplicate",
    ]
    with transaction(service.engine) as connection:
        repeats = connection.scalar(select(GraphNotificationKey.repeats))
    assert repeats == 3


def test_a_new_version_of_the_item_is_not_a_repeat(service: Service) -> None:
    subscription = service.subscription()

    service.post(notification(subscription, change="updated", etag='W/"1"'))
    service.post(notification(subscription, change="updated", etag='W/"2"'))
    service.post(notification(subscription, change="deleted", etag=None))

    assert [e.type for e in service.events()] == [
        "messageUpdated",
        "messageUpdated",
        "messageDeleted",
    ]


def test_a_repeat_without_a_version_counts_only_in_the_short_window(
    service: Service,
) -> None:
    subscription = service.subscription()
    sent = notification(subscription, change="deleted", etag=None)
    service.post(sent)
    service.post(sent)

    with transaction(service.engine, write=True) as connection:
        connection.execute(
            update(GraphNotificationKey).values(
                first_seen_at=utcnow() - timedelta(minutes=11)
            )
        )
    service.post(sent)

    assert len(service.events()) == 2


def test_a_notification_arriving_while_the_subscription_is_created_is_kept(
    service: Service,
) -> None:
    """Graph may notify before it has told us the subscription's id."""
    creating = service.subscription(graph_id="")
    early = notification(creating) | {"subscriptionId": str(uuid.uuid4())}

    service.post(early)

    [event] = service.events()
    assert json.loads(event.payload)["subscription"] == creating.id


def test_an_unknown_change_type_is_kept_as_unsupported(service: Service) -> None:
    subscription = service.subscription()

    service.post(notification(subscription, change="unknownFutureValue"))

    [event] = service.events()
    assert event.status == "unsupported"
    assert service.jobs() == []


def test_a_onedrive_notification_queues_one_resynchronisation(
    service: Service,
) -> None:
    subscription = service.subscription(kind="drive")
    changed = notification(subscription, change="updated", etag=None)
    del changed["resourceData"]

    service.post(changed)
    service.post(changed)

    assert service.events() == []
    assert service.jobs() == [("graph_subscription", f"resync:{subscription.id}")]
    assert [d.outcome for d in service.deliveries()] == ["accepted", "duplicate"]


# Lifecycle notifications.


@pytest.mark.parametrize(
    ("event", "action"),
    [
        ("reauthorizationRequired", "reauthorize"),
        ("subscriptionRemoved", "recreate"),
        ("missed", "resync"),
    ],
)
def test_lifecycle_notifications_queue_the_work_they_ask_for(
    service: Service, event: str, action: str
) -> None:
    subscription = service.subscription()
    lifecycle = {
        "subscriptionId": subscription.graph_subscription_id,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "tenantId": TENANT,
        "clientState": CLIENT_STATE,
        "lifecycleEvent": event,
    }

    first = service.post(lifecycle, path="/hooks/msgraph/lifecycle")
    repeat = service.post(lifecycle, path="/hooks/msgraph/lifecycle")
    forged = service.post(
        lifecycle | {"clientState": "nope"}, path="/hooks/msgraph/lifecycle"
    )

    assert [r.status_code for r in (first, repeat, forged)] == [202, 202, 202]
    assert service.events() == []
    assert service.jobs() == [("graph_subscription", f"{action}:{subscription.id}")]
    assert [d.outcome for d in service.deliveries()] == [
        "accepted",
        "duplicate",
        "rejected",
    ]
    with transaction(service.engine) as connection:
        stored = store.get_subscription(connection, subscription.id)
    assert stored.last_lifecycle_event == event


# Malformed deliveries.


@pytest.mark.parametrize(
    ("content", "headers", "method", "status"),
    [
        (b"{not json", {}, "POST", 400),
        (b'{"value": "nope"}', {}, "POST", 400),
        (b'{"value": []}', {}, "POST", 400),
        (b"[]", {}, "POST", 400),
        (b'{"value": [{}]}', {"Content-Type": "text/plain"}, "POST", 415),
        (b"", {}, "GET", 405),
        (b"x" * (1024 * 1024 + 1), {}, "POST", 413),
    ],
    ids=["json", "value", "empty", "array", "media-type", "method", "size"],
)
def test_malformed_deliveries_get_a_4xx_and_are_recorded(
    service: Service,
    content: bytes,
    headers: dict[str, str],
    method: str,
    status: int,
) -> None:
    response = service.post(content=content, headers=headers, method=method)

    assert response.status_code == status
    [delivery] = service.deliveries()
    assert delivery.status_code == status
    assert delivery.source == "msgraph"


def test_the_client_state_reaches_no_log_and_no_row(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")  # into capsys's stream
    subscription = service.subscription()
    service.post(
        notification(subscription),
        notification(subscription, client_state=CLIENT_STATE + "-forged"),
    )
    service.deliveries()

    logged = capsys.readouterr()
    assert "graph_notification_rejected" in logged.err
    assert CLIENT_STATE not in logged.out + logged.err
    with transaction(service.engine) as connection:
        for table in (Event, Delivery, Job, GraphNotificationKey):
            for row in connection.execute(select(table.__table__)).all():
                assert CLIENT_STATE not in json.dumps([str(value) for value in row])
