"""The simulated Graph's change notifications: subscriptions, the handshake,
deliveries with retries and repeats, lifecycle notifications, delta queries.

A small receiver stands in for brokerhooks: it echoes validation tokens (or
misbehaves on purpose) and keeps the notifications it is sent.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from tests.servers import serve_in_thread
from tests.simulators.msgraph.conftest import ANN, BOB, CLIENT_ID, bearer

pytestmark = pytest.mark.anyio

HOOK = "https://hooks.test/hooks/msgraph"
LIFECYCLE = "https://hooks.test/hooks/msgraph/lifecycle"
CLIENT_STATE = "a-client-state-only-brokerhooks-and-graph-know"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Receiver:
    """A notification endpoint: answers the handshake as told, keeps the rest."""

    def __init__(self) -> None:
        self.handshake = "echo"  # echo, encoded, html, refuse
        self.failures = 0  # answer the next N notification POSTs with 500
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.app = Starlette(
            routes=[
                Route("/hooks/msgraph", self.receive, methods=["POST"]),
                Route("/hooks/msgraph/lifecycle", self.receive, methods=["POST"]),
            ]
        )

    async def receive(self, request: Request) -> Response:
        token = request.query_params.get("validationToken")
        if token is not None:
            if self.handshake == "echo":
                return PlainTextResponse(token)
            if self.handshake == "encoded":
                return PlainTextResponse(str(request.url).split("validationToken=")[1])
            if self.handshake == "html":
                return Response(token, media_type="text/html")
            return Response(status_code=500)
        if self.failures:
            self.failures -= 1
            return Response(status_code=500)
        self.received.append((request.url.path, json.loads(await request.body())))
        return Response(status_code=202)

    def items(self, path: str = "/hooks/msgraph") -> list[dict[str, Any]]:
        return [
            item
            for where, body in self.received
            if where == path
            for item in body["value"]
        ]


@pytest.fixture
def receiver(sim: MicrosoftGraphSimulator) -> Receiver:
    receiver = Receiver()
    sim.notification_transport = httpx.ASGITransport(app=receiver.app)
    sim.notification_retry_delays = (0.0, 0.0)
    return receiver


@pytest.fixture
def app_only(sim: MicrosoftGraphSimulator) -> dict[str, str]:
    return bearer(sim.issue_access_token(client_id=CLIENT_ID))


@pytest.fixture
def ann(sim: MicrosoftGraphSimulator) -> dict[str, str]:
    return bearer(sim.issue_access_token(ANN))


def in_minutes(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def subscription(resource: str, **fields: Any) -> dict[str, Any]:
    return {
        "changeType": "created,updated",
        "notificationUrl": HOOK,
        "lifecycleNotificationUrl": LIFECYCLE,
        "resource": resource,
        "expirationDateTime": in_minutes(4000),
        "clientState": CLIENT_STATE,
        **fields,
    }


async def subscribe(
    http: httpx.AsyncClient, headers: dict[str, str], resource: str, **fields: Any
) -> httpx.Response:
    return await http.post(
        "/v1.0/subscriptions", json=subscription(resource, **fields), headers=headers
    )


async def deals_list(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    response = await http.post(
        f"/v1.0/users/{ANN}/todo/lists", json={"displayName": "Deals"}, headers=headers
    )
    list_id: str = response.json()["id"]
    return list_id


# Creating.


async def test_creating_validates_both_urls_with_the_decoded_token(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    response = await subscribe(
        http, app_only, f"users/{ANN}/mailFolders('inbox')/messages"
    )

    assert response.status_code == 201, response.text
    created = response.json()
    assert created["clientState"] == CLIENT_STATE
    assert created["changeType"] == "created,updated"
    assert created["applicationId"] == CLIENT_ID
    assert [url for url, _ in sim.validations] == [HOOK, LIFECYCLE]
    [kept] = sim.active_subscriptions()
    assert kept.id == created["id"]
    assert kept.collection == "inbox"


@pytest.mark.parametrize("handshake", ["encoded", "html", "refuse"])
async def test_a_bad_handshake_creates_nothing(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
    handshake: str,
) -> None:
    receiver.handshake = handshake

    response = await subscribe(http, app_only, f"users/{ANN}/events")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ValidationError"
    assert sim.active_subscriptions() == []


async def test_the_handshake_goes_over_real_http(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, app_only: dict[str, str]
) -> None:
    receiver = Receiver()
    with serve_in_thread(receiver.app) as url:
        response = await subscribe(
            http,
            app_only,
            f"users/{ANN}/events",
            notificationUrl=url + "/hooks/msgraph",
            lifecycleNotificationUrl=url + "/hooks/msgraph/lifecycle",
        )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("resource", "minutes", "status"),
    [
        (f"users/{ANN}/messages", 4230, 201),
        (f"users/{ANN}/messages", 4232, 400),
        (f"users/{ANN}/drive/root", 42299, 201),
        (f"users/{ANN}/drive/root", 42301, 400),
        (f"users/{ANN}/events", -1, 400),
    ],
    ids=["mail-max", "mail-over", "drive-max", "drive-over", "past"],
)
async def test_expiry_is_capped_per_resource(
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
    resource: str,
    minutes: float,
    status: int,
) -> None:
    changes = "updated" if "drive" in resource else "created"
    response = await subscribe(
        http,
        app_only,
        resource,
        changeType=changes,
        expirationDateTime=in_minutes(minutes - 0.05),
    )

    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("resource", "fields", "message"),
    [
        (f"users/{ANN}/drive/root", {"changeType": "created"}, "Only 'updated'"),
        (f"users/{ANN}/messages", {"clientState": "x" * 129}, "128"),
        (f"users/{ANN}/contacts", {}, "not supported"),
        (f"users/{ANN}/messages", {"notificationUrl": "http://hooks.test/x"}, "https"),
        (f"users/{ANN}/messages", {"notificationURL": HOOK}, "does not exist"),
    ],
    ids=["drive-created", "long-client-state", "resource", "http", "typo"],
)
async def test_bad_subscriptions_are_refused(
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
    resource: str,
    fields: dict[str, Any],
    message: str,
) -> None:
    response = await subscribe(http, app_only, resource, **fields)

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


async def test_todo_subscriptions_need_a_list_and_can_be_turned_off_for_app_only(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    ann: dict[str, str],
    receiver: Receiver,
) -> None:
    list_id = await deals_list(http, app_only)
    resource = f"users/{ANN}/todo/lists/{list_id}/tasks"

    missing = await subscribe(http, app_only, f"users/{ANN}/todo/lists/nope/tasks")
    sim.allow_app_only_todo_subscriptions = False
    refused = await subscribe(http, app_only, resource)
    delegated = await subscribe(http, ann, f"me/todo/lists/{list_id}/tasks")

    assert missing.status_code == 404
    assert refused.status_code == 400
    assert delegated.status_code == 201, delegated.text


# Renewing and deleting.


async def test_renewing_moves_the_expiry_within_the_maximum(
    http: httpx.AsyncClient, app_only: dict[str, str], receiver: Receiver
) -> None:
    created = (await subscribe(http, app_only, f"users/{ANN}/events")).json()
    path = f"/v1.0/subscriptions/{created['id']}"

    renewed = await http.patch(
        path, json={"expirationDateTime": in_minutes(4200)}, headers=app_only
    )
    too_far = await http.patch(
        path, json={"expirationDateTime": in_minutes(5000)}, headers=app_only
    )
    reauthorized = await http.post(path + "/reauthorize", headers=app_only)

    assert renewed.status_code == 200
    assert renewed.json()["expirationDateTime"] > created["expirationDateTime"]
    assert too_far.status_code == 400
    assert reauthorized.status_code == 204


async def test_deleted_expired_and_other_apps_subscriptions_are_not_found(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    first = (await subscribe(http, app_only, f"users/{ANN}/events")).json()
    second = (await subscribe(http, app_only, f"users/{BOB}/events")).json()
    sim.add_app("someone-else", "their-secret")
    stranger = bearer(sim.issue_access_token(client_id="someone-else"))

    deleted = await http.delete(f"/v1.0/subscriptions/{first['id']}", headers=app_only)
    sim.expire_subscription(second["id"])

    assert deleted.status_code == 204
    for sub_id, headers in ((first["id"], app_only), (second["id"], app_only)):
        gone = await http.get(f"/v1.0/subscriptions/{sub_id}", headers=headers)
        assert gone.status_code == 404
    third = (await subscribe(http, app_only, f"users/{ANN}/events")).json()
    hidden = await http.get(f"/v1.0/subscriptions/{third['id']}", headers=stranger)
    assert hidden.status_code == 404


# Notifications.


async def test_mail_that_arrives_is_notified_with_the_client_state(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    created = (
        await subscribe(http, app_only, f"users/{ANN}/mailFolders('inbox')/messages")
    ).json()

    message = await sim.deliver_mail(
        ANN, sender="linh@example.com", subject="Rate lock", body="Can we lock it?"
    )

    [item] = receiver.items()
    assert item["subscriptionId"] == created["id"]
    assert item["clientState"] == CLIENT_STATE
    assert item["changeType"] == "created"
    assert item["tenantId"] == sim.tenant_id
    assert item["resourceData"]["id"] == message["id"]
    assert item["resourceData"]["@odata.etag"] == message["@odata.etag"]
    assert item["resource"].endswith(f"/Messages/{message['id']}")
    assert len(message["id"]) > 100  # as long as Outlook's
    fetched = await http.get(
        f"/v1.0/users/{ANN}/messages/{message['id']}", headers=app_only
    )
    assert fetched.json()["from"]["emailAddress"]["address"] == "linh@example.com"


async def test_mail_sent_to_a_mailbox_of_the_tenant_arrives_in_its_inbox(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    await subscribe(http, app_only, f"users/{BOB}/mailFolders('inbox')/messages")
    to = [
        {"emailAddress": {"name": "Bob", "address": BOB.upper()}},
        {"emailAddress": {"address": "client@example.com"}},
    ]
    message = {
        "subject": "Valuation booked",
        "body": {"contentType": "HTML", "content": "<p>Tuesday</p>"},
        "toRecipients": to,
        "ccRecipients": [{"emailAddress": {"address": ANN}}],
        "bccRecipients": [{"emailAddress": {"address": BOB}}],
        "internetMessageHeaders": [{"name": "x-brokerhooks-key", "value": "k1"}],
    }

    sent = await http.post(
        f"/v1.0/users/{ANN}/sendMail", headers=app_only, json={"message": message}
    )
    draft = await http.post(
        f"/v1.0/users/{ANN}/messages",
        headers=app_only,
        json={"subject": "Second", "toRecipients": [to[0]]},
    )
    await http.post(
        f"/v1.0/users/{ANN}/messages/{draft.json()['id']}/send", headers=app_only
    )
    await sim.flush_notifications()

    assert sent.status_code == 202
    bob = (await http.get(f"/v1.0/users/{BOB}/messages", headers=app_only)).json()
    ann = (await http.get(f"/v1.0/users/{ANN}/messages", headers=app_only)).json()
    # One copy per mailbox however often it is named; none for outsiders.
    assert [m["subject"] for m in bob["value"]] == ["Valuation booked", "Second"]
    assert [m["subject"] for m in ann["value"]] == ["Valuation booked"]
    first = bob["value"][0]
    assert first["from"]["emailAddress"] == {"name": "Ann Smith", "address": ANN}
    assert first["body"] == {"contentType": "html", "content": "<p>Tuesday</p>"}
    assert first["toRecipients"] == to
    assert first["parentFolderId"] == ann["value"][0]["parentFolderId"]
    assert first["id"] != ann["value"][0]["id"]
    headers = await http.get(
        f"/v1.0/users/{BOB}/messages/{first['id']}",
        headers=app_only,
        params={"$select": "internetMessageHeaders"},
    )
    assert headers.json()["internetMessageHeaders"] == message["internetMessageHeaders"]
    # Only Bob's inbox is watched: his two copies are notified.
    assert [item["resourceData"]["id"] for item in receiver.items()] == [
        m["id"] for m in bob["value"]
    ]


async def test_task_changes_made_through_graph_or_in_to_do_are_notified(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    list_id = await deals_list(http, app_only)
    await subscribe(
        http,
        app_only,
        f"users/{ANN}/todo/lists/{list_id}/tasks",
        changeType="created,updated,deleted",
    )
    tasks = f"/v1.0/users/{ANN}/todo/lists/{list_id}/tasks"

    task = (
        await http.post(tasks, json={"title": "Order valuation"}, headers=app_only)
    ).json()
    await sim.flush_notifications()
    await sim.complete_task(ANN, list_id, task["id"])
    await http.delete(f"{tasks}/{task['id']}", headers=app_only)
    await sim.flush_notifications()

    changes = [
        (item["changeType"], item["resourceData"]["id"]) for item in receiver.items()
    ]
    assert changes == [
        ("created", task["id"]),
        ("updated", task["id"]),
        ("deleted", task["id"]),
    ]


async def test_a_file_change_notifies_the_drive_root_without_resource_data(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    resource = f"users/{ANN}/drive/root"
    await subscribe(http, app_only, resource, changeType="updated")

    await http.put(
        f"/v1.0/users/{ANN}/drive/root:/payslips.pdf:/content",
        content=b"%PDF",
        headers=app_only,
    )
    await sim.flush_notifications()

    [item] = receiver.items()
    assert item["changeType"] == "updated"
    assert item["resource"] == resource
    assert "resourceData" not in item


async def test_a_refused_delivery_is_retried(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    await subscribe(http, app_only, f"users/{ANN}/messages", changeType="created")
    receiver.failures = 2

    await sim.deliver_mail(ANN, sender="a@example.com", subject="Hi")

    attempts = [(sent.attempt, sent.status) for sent in sim.sent_notifications()]
    assert attempts == [(1, 500), (2, 500), (3, 202)]
    assert len(receiver.items()) == 1
    assert sim.slow_deliveries() == []


async def test_repeats_and_forged_client_states_can_be_sent(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    await subscribe(http, app_only, f"users/{ANN}/messages", changeType="created")
    sim.duplicate_deliveries = 1
    sim.forge_client_states = 1

    await sim.deliver_mail(ANN, sender="a@example.com", subject="Hi")

    first, repeat = receiver.items()
    assert first == repeat
    assert first["clientState"] != CLIENT_STATE


async def test_muted_changes_are_missed_until_a_delta_query(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    await subscribe(http, app_only, f"users/{ANN}/messages", changeType="created")

    await sim.deliver_mail(ANN, sender="a@example.com", subject="Lost", notify=False)

    assert receiver.items() == []


# Lifecycle notifications.


@pytest.mark.parametrize(
    "event", ["reauthorizationRequired", "missed", "subscriptionRemoved"]
)
async def test_lifecycle_notifications_go_to_the_lifecycle_url(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
    event: str,
) -> None:
    created = (await subscribe(http, app_only, f"users/{ANN}/messages")).json()

    await sim.send_lifecycle(created["id"], event)

    [item] = receiver.items("/hooks/msgraph/lifecycle")
    assert item["lifecycleEvent"] == event
    assert item["clientState"] == CLIENT_STATE
    assert "resource" not in item
    removed = event == "subscriptionRemoved"
    assert (sim.active_subscriptions() == []) is removed


# Delta queries.


async def test_delta_gives_everything_then_only_what_changed(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, app_only: dict[str, str]
) -> None:
    first = await sim.deliver_mail(ANN, sender="a@example.com", subject="One")
    path = f"/v1.0/users/{ANN}/mailFolders('inbox')/messages/delta"

    initial = (await http.get(path, headers=app_only)).json()
    second = await sim.deliver_mail(ANN, sender="b@example.com", subject="Two")
    await http.delete(f"/v1.0/users/{ANN}/messages/{first['id']}", headers=app_only)
    later = (await http.get(initial["@odata.deltaLink"], headers=app_only)).json()
    after = (await http.get(later["@odata.deltaLink"], headers=app_only)).json()

    assert [item["id"] for item in initial["value"]] == [first["id"]]
    assert later["value"] == [
        second,
        {
            "@odata.type": "#microsoft.graph.message",
            "@removed": {"reason": "deleted"},
            "id": first["id"],
        },
    ]
    assert after["value"] == []


async def test_delta_pages_and_latest_and_expired_links(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, app_only: dict[str, str]
) -> None:
    sim.page_size = 2
    for number in range(5):
        await sim.deliver_mail(ANN, sender="a@example.com", subject=f"{number}")
    path = f"/v1.0/users/{ANN}/messages/delta"

    seen: list[str] = []
    page = (await http.get(path, headers=app_only)).json()
    while "@odata.nextLink" in page:
        seen += [item["subject"] for item in page["value"]]
        page = (await http.get(page["@odata.nextLink"], headers=app_only)).json()
    seen += [item["subject"] for item in page["value"]]
    latest = (
        await http.get(
            f"/v1.0/users/{ANN}/drive/root/delta?token=latest", headers=app_only
        )
    ).json()
    sim.expire_delta_tokens()
    expired = await http.get(page["@odata.deltaLink"], headers=app_only)

    assert seen == ["0", "1", "2", "3", "4"]
    assert latest["value"] == []
    assert "@odata.deltaLink" in latest
    assert expired.status_code == 410


async def test_notifications_fit_graphs_schema(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    receiver: Receiver,
) -> None:
    """Each body is a changeNotificationCollection of the OpenAPI subset."""
    contract = pytest.importorskip("tests.connectors.msgraph.test_contract")
    if contract.SPEC is None:
        pytest.skip("the Graph OpenAPI subset is not beside the repository")
    import jsonschema
    import yaml

    document = contract.without_nullable(yaml.safe_load(contract.SPEC.read_text()))
    schema = {
        "$ref": "#/components/schemas/microsoft.graph.changeNotificationCollection",
        "components": document["components"],
    }
    created = (await subscribe(http, app_only, f"users/{ANN}/messages")).json()
    await sim.deliver_mail(ANN, sender="a@example.com", subject="Hi")
    await sim.send_lifecycle(created["id"], "missed")

    assert len(receiver.received) == 2
    for _, body in receiver.received:
        jsonschema.validate(body, schema)
