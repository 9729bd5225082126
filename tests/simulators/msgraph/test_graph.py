"""The simulated Graph: tokens, To Do, mail, events, faults and limits."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from tests.simulators.msgraph.conftest import ANN, BOB, bearer

pytestmark = pytest.mark.anyio

DUE = {"dateTime": "2026-09-04T17:00:00", "timeZone": "UTC"}


@pytest.fixture
def ann(sim: MicrosoftGraphSimulator) -> dict[str, str]:
    return bearer(sim.issue_access_token(ANN))


@pytest.fixture
def app_only(sim: MicrosoftGraphSimulator) -> dict[str, str]:
    return bearer(sim.issue_access_token())


async def default_list_id(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    lists = (await http.get("/v1.0/me/todo/lists", headers=headers)).json()
    list_id: str = lists["value"][0]["id"]
    return list_id


# Tokens.


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Access token is empty."),
        ({"Authorization": "Bearer not-a-token"}, "Invalid token"),
        ({"Authorization": "Basic abc"}, "Access token is empty."),
    ],
    ids=["missing", "unknown", "not-bearer"],
)
async def test_requests_without_a_valid_token_get_graphs_401(
    http: httpx.AsyncClient, headers: dict[str, str], message: str
) -> None:
    response = await http.get("/v1.0/me/todo/lists", headers=headers)

    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "InvalidAuthenticationToken"
    assert message in error["message"]
    assert "request-id" in error["innerError"]


async def test_expired_tokens_are_refused(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    sim.expire_access_tokens()

    response = await http.get("/v1.0/me/todo/lists", headers=ann)

    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


async def test_me_needs_a_delegated_token(
    http: httpx.AsyncClient, app_only: dict[str, str]
) -> None:
    response = await http.get("/v1.0/me/todo/lists", headers=app_only)

    assert response.status_code == 400
    assert "delegated" in response.json()["error"]["message"]


async def test_a_delegated_token_reaches_only_its_own_mailbox(
    http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    own = await http.get(f"/v1.0/users/{ANN}/todo/lists", headers=ann)
    other = await http.get(f"/v1.0/users/{BOB}/todo/lists", headers=ann)

    assert own.status_code == 200
    assert other.status_code == 403


async def test_the_request_log_keeps_no_token(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    await http.get("/v1.0/me/todo/lists", headers=ann)

    [request] = sim.graph_requests()
    assert request.had_authorization
    assert request.mailbox == ANN
    assert ann["Authorization"].split()[1] not in repr(request)


# To Do.


async def test_a_new_task_gets_graphs_defaults(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    list_id = await default_list_id(http, ann)

    response = await http.post(
        f"/v1.0/me/todo/lists/{list_id}/tasks",
        headers=ann,
        json={"title": "Call lender", "dueDateTime": DUE, "importance": "HIGH"},
    )

    task = response.json()
    assert response.status_code == 201
    assert task["status"] == "notStarted"
    assert task["importance"] == "high"
    assert task["body"] == {"content": "", "contentType": "text"}
    assert task["dueDateTime"] == {
        "dateTime": "2026-09-04T17:00:00.0000000",
        "timeZone": "UTC",
    }
    assert sim.tasks(ANN, list_id) == [
        {k: v for k, v in task.items() if k != "@odata.context"}
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"title": "x", "dueDate": DUE},
        {"title": "x", "status": "done"},
        {"title": "x", "dueDateTime": "2026-09-04"},
        {"title": 5},
    ],
    ids=["unknown-property", "bad-enum", "bad-date", "bad-type"],
)
async def test_a_malformed_task_is_refused(
    http: httpx.AsyncClient, ann: dict[str, str], body: dict[str, object]
) -> None:
    list_id = await default_list_id(http, ann)

    response = await http.post(
        f"/v1.0/me/todo/lists/{list_id}/tasks", headers=ann, json=body
    )

    assert response.status_code == 400


async def test_collections_page_with_next_links(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    sim.page_size = 2
    for name in ("A", "B"):
        await http.post("/v1.0/me/todo/lists", headers=ann, json={"displayName": name})

    first = (await http.get("/v1.0/me/todo/lists", headers=ann)).json()
    second = (await http.get(first["@odata.nextLink"], headers=ann)).json()

    assert len(first["value"]) == 2
    assert [item["displayName"] for item in second["value"]] == ["B"]
    assert "@odata.nextLink" not in second


# Mail and events.


@pytest.mark.parametrize(
    ("message_key", "save_key"),
    [("message", "saveToSentItems"), ("Message", "SaveToSentItems")],
    ids=["docs-casing", "csdl-casing"],
)
async def test_send_mail_takes_either_parameter_casing(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    app_only: dict[str, str],
    message_key: str,
    save_key: str,
) -> None:
    message = {
        "subject": "Approved",
        "body": {"contentType": "HTML", "content": "<p>Hi</p>"},
        "toRecipients": [{"emailAddress": {"address": "client@example.com"}}],
    }

    response = await http.post(
        f"/v1.0/users/{ANN}/sendMail",
        headers=app_only,
        json={message_key: message, save_key: False},
    )

    assert response.status_code == 202
    assert response.content == b""
    [mail] = sim.sent_mail
    assert (mail.mailbox, mail.subject, mail.to) == (
        ANN,
        "Approved",
        ["client@example.com"],
    )
    assert mail.message["body"]["contentType"] == "html"
    assert mail.save_to_sent_items is False


async def test_send_mail_needs_a_recipient(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    response = await http.post(
        "/v1.0/me/sendMail", headers=ann, json={"message": {"subject": "x"}}
    )

    assert response.json()["error"]["code"] == "ErrorInvalidRecipients"
    assert sim.sent_mail == []


async def test_a_draft_is_sent_once_and_keeps_its_id(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    made = await http.post(
        "/v1.0/me/messages",
        headers=ann,
        json={
            "subject": "Approved",
            "body": {"contentType": "HTML", "content": "<p>Yes</p>"},
            "toRecipients": [{"emailAddress": {"address": "jane@example.com"}}],
        },
    )
    draft = made.json()
    before = await http.get(f"/v1.0/me/messages/{draft['id']}", headers=ann)
    sent = await http.post(f"/v1.0/me/messages/{draft['id']}/send", headers=ann)
    after = await http.get(f"/v1.0/me/messages/{draft['id']}", headers=ann)
    again = await http.post(f"/v1.0/me/messages/{draft['id']}/send", headers=ann)
    missing = await http.post("/v1.0/me/messages/AAMkAGnothing/send", headers=ann)
    listed = await http.get("/v1.0/me/messages", headers=ann)

    assert made.status_code == 201
    assert (draft["isDraft"], before.json()["isDraft"]) == (True, True)
    assert (sent.status_code, sent.content) == (202, b"")
    assert (after.status_code, after.json()["isDraft"]) == (200, False)
    assert after.json()["parentFolderId"] != draft["parentFolderId"]
    assert again.status_code == 400
    assert missing.json()["error"]["code"] == "ErrorItemNotFound"
    [mail] = sim.sent_mail
    assert (mail.mailbox, mail.to, mail.subject) == (
        ANN,
        ["jane@example.com"],
        "Approved",
    )
    # The inbox listing is not where drafts and sent mail show.
    assert listed.json()["value"] == []


async def test_a_draft_with_an_unknown_field_is_refused(
    http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    answer = await http.post(
        "/v1.0/me/messages", headers=ann, json={"subject": "x", "colour": "red"}
    )

    assert answer.status_code == 400


async def test_an_event_transaction_id_creates_one_event(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    event = {"subject": "Settlement", "start": DUE, "end": DUE, "transactionId": "t-1"}

    first = await http.post("/v1.0/me/events", headers=ann, json=event)
    again = await http.post(
        "/v1.0/me/events", headers=ann, json={**event, "subject": "Changed"}
    )
    changed = await http.patch(
        f"/v1.0/me/events/{first.json()['id']}",
        headers=ann,
        json={"transactionId": "t-2"},
    )

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["subject"] == "Settlement"
    assert len(sim.events(ANN)) == 1
    assert changed.status_code == 400


# Faults and limits.


async def test_injected_faults_answer_then_clear(
    sim: MicrosoftGraphSimulator, http: httpx.AsyncClient, ann: dict[str, str]
) -> None:
    sim.inject_fault(429, retry_after=7, times=1, path="/todo/")
    sim.inject_fault(503, times=1, method="POST")

    throttled = await http.get("/v1.0/me/todo/lists", headers=ann)
    passed = await http.get("/v1.0/me/todo/lists", headers=ann)
    unavailable = await http.post(
        "/v1.0/me/todo/lists", headers=ann, json={"displayName": "X"}
    )

    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "7"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert passed.status_code == 200
    assert unavailable.status_code == 503


async def test_more_than_four_concurrent_requests_per_mailbox_are_throttled(
    sim: MicrosoftGraphSimulator,
    http: httpx.AsyncClient,
    ann: dict[str, str],
    app_only: dict[str, str],
) -> None:
    """Without a client-side cap, a burst on one mailbox meets 429s."""
    sim.latency = 0.05

    responses = await asyncio.gather(
        *(http.get("/v1.0/me/todo/lists", headers=ann) for _ in range(6)),
        http.get(f"/v1.0/users/{BOB}/todo/lists", headers=app_only),
    )

    statuses = [response.status_code for response in responses]
    assert statuses[:6].count(200) == 4
    assert statuses[:6].count(429) == 2
    assert statuses[6] == 200
    assert sim.max_in_flight == {ANN.casefold(): 4, BOB.casefold(): 1}
    throttled = next(r for r in responses if r.status_code == 429)
    assert throttled.json()["error"]["code"] == "ApplicationThrottled"
    assert "retry-after" in throttled.headers
