"""GraphClient against the simulator: each operation, faults and limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from brokerhooks.connectors.errors import TransientError
from brokerhooks.connectors.msgraph.client import CHUNK_MULTIPLE, GraphClient
from brokerhooks.connectors.msgraph.errors import (
    GraphConflict,
    GraphNotFound,
    GraphRequestError,
)
from brokerhooks.connectors.msgraph.resources import (
    EventFields,
    LinkedResource,
    MailMessage,
    Recipient,
    TaskFields,
)
from brokerhooks.logs import configure_logging
from brokerhooks.security.secrets import Secret
from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from tests.connectors.msgraph.conftest import ANN

pytestmark = pytest.mark.anyio

GRAPH_URL = "https://graph.test"
SYDNEY = timezone(timedelta(hours=10))


class SimulatorTokens:
    """A token provider that mints tokens in the simulator, counting calls."""

    def __init__(self, sim: MicrosoftGraphSimulator, upn: str | None) -> None:
        self.sim = sim
        self.upn = upn
        self.calls: list[bool] = []

    async def __call__(self, *, force_refresh: bool = False) -> Secret:
        self.calls.append(force_refresh)
        return Secret(self.sim.issue_access_token(self.upn))


class Sleeps:
    """Stands in for asyncio.sleep: records each wait, waits for none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


ClientFactory = Callable[..., GraphClient]


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def tokens(sim: MicrosoftGraphSimulator) -> SimulatorTokens:
    return SimulatorTokens(sim, ANN)


@pytest.fixture
async def make_client(
    sim: MicrosoftGraphSimulator, tokens: SimulatorTokens, sleeps: Sleeps
) -> AsyncIterator[ClientFactory]:
    made: list[GraphClient] = []

    def make(**options: Any) -> GraphClient:
        settings: dict[str, Any] = {
            "token_provider": tokens,
            "mailbox": ANN,
            "app_only": False,
            "graph_url": GRAPH_URL,
            "transport": sim.transport(),
            "sleep": sleeps,
            **options,
        }
        client = GraphClient(**settings)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def client(make_client: ClientFactory) -> GraphClient:
    return make_client()


def paths(sim: MicrosoftGraphSimulator, method: str | None = None) -> list[str]:
    return [request.path for request in sim.graph_requests(method)]


# To Do.


async def test_find_or_create_task_list_creates_once(
    sim: MicrosoftGraphSimulator, client: GraphClient
) -> None:
    first = await client.find_or_create_task_list("Deals")
    again = await client.find_or_create_task_list("deals")

    assert again["id"] == first["id"]
    assert [item["displayName"] for item in sim.task_lists(ANN)] == ["Tasks", "Deals"]
    assert paths(sim, "POST") == ["/v1.0/me/todo/lists"]


async def test_task_lists_are_read_across_pages(
    sim: MicrosoftGraphSimulator, client: GraphClient
) -> None:
    for name in ("A", "B", "C"):
        await client.find_or_create_task_list(name)
    sim.page_size = 1

    names = [item["displayName"] for item in await client.list_task_lists()]

    assert names == ["Tasks", "A", "B", "C"]


async def test_create_get_and_update_a_task(
    sim: MicrosoftGraphSimulator, client: GraphClient
) -> None:
    task_list = await client.find_or_create_task_list("Deals")
    fields = TaskFields(
        title="Call the lender",
        body="<p>Approval for <b>Smith</b></p>",
        body_type="html",
        due=datetime(2026, 9, 5, 9, 0, tzinfo=SYDNEY),
        reminder=datetime(2026, 9, 4, 23, 30, tzinfo=UTC),
        importance="high",
        linked_resource=LinkedResource(
            web_url="https://acme.salestrekker.com/deal/1234",
            display_name="Smith - Loan 1234",
            external_id="deal-1234",
        ),
    )

    created = await client.create_task(task_list["id"], fields)
    updated = await client.update_task(
        task_list["id"], created["id"], TaskFields(status="completed")
    )
    fetched = await client.get_task(task_list["id"], created["id"])

    assert created["dueDateTime"] == {
        "dateTime": "2026-09-04T23:00:00.0000000",
        "timeZone": "UTC",
    }
    assert created["isReminderOn"] is True
    assert created["body"]["contentType"] == "html"
    assert updated["status"] == "completed"
    assert fetched["completedDateTime"] is not None
    links = sim.user(ANN).task_lists[task_list["id"]].linked_resources
    assert links[created["id"]][0]["externalId"] == "deal-1234"


async def test_a_missing_task_is_graph_not_found(client: GraphClient) -> None:
    task_list = await client.find_or_create_task_list("Deals")

    with pytest.raises(GraphNotFound, match="ErrorItemNotFound"):
        await client.get_task(task_list["id"], "AAMkAnotthere")


# Mail.


async def test_send_mail(sim: MicrosoftGraphSimulator, client: GraphClient) -> None:
    message = MailMessage(
        to=["client@example.com", Recipient("partner@example.com", "Pat")],
        cc=["broker@example.com"],
        subject="Your loan is approved",
        html_body="<p>Good news.</p>",
        headers={"x-brokerhooks-action": "run-1/step-2"},
    )

    await client.send_mail(message, save_to_sent_items=False)

    [mail] = sim.sent_mail
    assert mail.mailbox == ANN
    assert mail.to == ["client@example.com", "partner@example.com"]
    assert mail.cc == ["broker@example.com"]
    assert mail.subject == "Your loan is approved"
    assert mail.message["body"] == {
        "contentType": "html",
        "content": "<p>Good news.</p>",
    }
    assert mail.save_to_sent_items is False


# Calendar.


def settlement(subject: str = "Settlement: Smith") -> EventFields:
    return EventFields(
        subject=subject,
        html_body="<p>Settlement day.</p>",
        start=datetime(2026, 9, 10, 10, 0, tzinfo=SYDNEY),
        end=datetime(2026, 9, 10, 11, 0, tzinfo=SYDNEY),
        location="Office",
        attendees=["client@example.com"],
        reminder_minutes=60,
    )


async def test_create_event_is_idempotent_by_transaction_id(
    sim: MicrosoftGraphSimulator, client: GraphClient
) -> None:
    first = await client.create_event(settlement(), transaction_id="run-1/step-1")
    again = await client.create_event(settlement(), transaction_id="run-1/step-1")
    other = await client.create_event(settlement(), transaction_id="run-2/step-1")

    assert again["id"] == first["id"]
    assert other["id"] != first["id"]
    assert len(sim.events(ANN)) == 2
    assert first["start"] == {
        "dateTime": "2026-09-10T00:00:00.0000000",
        "timeZone": "UTC",
    }
    assert first["transactionId"] == "run-1/step-1"


async def test_update_cancel_and_delete_an_event(
    sim: MicrosoftGraphSimulator, client: GraphClient
) -> None:
    event = await client.create_event(settlement(), transaction_id="t-1")

    updated = await client.update_event(event["id"], EventFields(subject="Moved"))
    await client.cancel_event(event["id"], comment="Settlement moved")
    cancelled = await client.get_event(event["id"])
    await client.delete_event(event["id"])

    assert updated["subject"] == "Moved"
    assert cancelled["isCancelled"] is True
    assert sim.events(ANN) == []
    with pytest.raises(GraphNotFound):
        await client.get_event(event["id"])


# OneDrive.


async def test_ensure_folder_creates_each_missing_folder_once(
    sim: MicrosoftGraphSimulator, client: GraphClient
) -> None:
    first = await client.ensure_folder("Deals/Smith - Loan 1234")
    again = await client.ensure_folder("Deals/Smith - Loan 1234")

    assert first["name"] == "Smith - Loan 1234"
    assert again["id"] == first["id"]
    assert first["parentReference"]["path"] == "/drive/root:/Deals"
    assert len(paths(sim, "POST")) == 2


@pytest.mark.parametrize(
    ("behavior", "name"),
    [("rename", "Smith 1"), ("replace", "Smith")],
)
async def test_create_folder_conflict_behaviour(
    client: GraphClient, behavior: Any, name: str
) -> None:
    first = await client.create_folder("", "Smith")

    second = await client.create_folder("", "Smith", conflict_behavior=behavior)

    assert second["name"] == name
    assert second["id"] != first["id"]


async def test_create_folder_fails_on_a_taken_name(client: GraphClient) -> None:
    await client.create_folder("", "Smith")

    with pytest.raises(GraphConflict, match="nameAlreadyExists") as raised:
        await client.create_folder("", "Smith")

    assert raised.value.status_code == 409


async def test_get_item_by_path(client: GraphClient) -> None:
    await client.ensure_folder("Deals/Smith")

    found = await client.get_item_by_path("Deals/Smith")
    missing = await client.get_item_by_path("Deals/Jones")

    assert found is not None
    assert found["name"] == "Smith"
    assert missing is None


async def test_a_small_file_goes_up_in_one_put(
    sim: MicrosoftGraphSimulator, client: GraphClient
) -> None:
    await client.ensure_folder("Deals")

    item = await client.upload_file("Deals", "note.txt", b"hello")

    assert item["size"] == 5
    assert sim.file_content(ANN, "Deals/note.txt") == b"hello"
    [put] = sim.graph_requests("PUT")
    assert put.path.endswith("/items/root:/Deals/note.txt:/content")
    assert "conflictBehavior=replace" in put.query


async def test_a_large_file_goes_up_in_a_session(
    sim: MicrosoftGraphSimulator, make_client: ClientFactory
) -> None:
    client = make_client(chunk_size=4 * CHUNK_MULTIPLE)
    content = bytes(range(256)) * (5 * 1024 * 1024 // 256) + b"end"
    await client.ensure_folder("Deals")

    item = await client.upload_file("Deals", "statement.pdf", content)

    assert item["size"] == len(content)
    assert sim.file_content(ANN, "Deals/statement.pdf") == content
    chunks = [r for r in sim.graph_requests("PUT") if r.path.startswith("/upload/")]
    assert len(chunks) == 5
    assert all(chunk.body_size % CHUNK_MULTIPLE == 0 for chunk in chunks[:-1])
    assert not any(chunk.had_authorization for chunk in chunks)


async def test_an_upload_resumes_where_graph_asks(
    sim: MicrosoftGraphSimulator, make_client: ClientFactory
) -> None:
    client = make_client(chunk_size=4 * CHUNK_MULTIPLE)
    content = b"\x01" * (5 * 1024 * 1024)
    sim.drop_upload_chunks(1)

    await client.upload_file("", "big.bin", content)

    assert sim.file_content(ANN, "big.bin") == content
    chunks = [r for r in sim.graph_requests("PUT") if r.path.startswith("/upload/")]
    assert len(chunks) == 4 + 1  # four chunks, the lost first one twice


async def test_a_session_upload_onto_a_taken_name_fails(
    sim: MicrosoftGraphSimulator, client: GraphClient
) -> None:
    await client.upload_file("", "big.bin", b"old")

    with pytest.raises(GraphConflict):
        await client.upload_file(
            "", "big.bin", b"\x02" * (5 * 1024 * 1024), conflict_behavior="fail"
        )

    assert sim.file_content(ANN, "big.bin") == b"old"


# App-only.


async def test_app_only_calls_address_the_mailbox(
    sim: MicrosoftGraphSimulator, make_client: ClientFactory
) -> None:
    client = make_client(token_provider=SimulatorTokens(sim, None), app_only=True)

    await client.find_or_create_task_list("Deals")
    await client.ensure_folder("Deals")

    assert paths(sim)[0] == f"/v1.0/users/{ANN}/todo/lists"
    assert f"/v1.0/users/{ANN}/drive" in paths(sim)


# Faults.


async def test_429_waits_as_long_as_retry_after_says(
    sim: MicrosoftGraphSimulator, client: GraphClient, sleeps: Sleeps
) -> None:
    sim.inject_fault(429, retry_after=7, times=2)

    lists = await client.list_task_lists()

    assert [item["displayName"] for item in lists] == ["Tasks"]
    assert sleeps.waits == [7.0, 7.0]
    assert [r.status for r in sim.graph_requests()] == [429, 429, 200]


@pytest.mark.parametrize("status", [503, 504])
async def test_unavailable_is_retried_with_backoff(
    sim: MicrosoftGraphSimulator, client: GraphClient, sleeps: Sleeps, status: int
) -> None:
    sim.inject_fault(status, times=2)

    await client.list_task_lists()

    assert sleeps.waits == [1.0, 2.0]


async def test_throttling_that_lasts_becomes_a_transient_error(
    sim: MicrosoftGraphSimulator, make_client: ClientFactory, sleeps: Sleeps
) -> None:
    client = make_client(max_retries=2)
    sim.inject_fault(429, retry_after=3, times=None)

    with pytest.raises(TransientError) as raised:
        await client.list_task_lists()

    assert raised.value.retry_after == 3.0
    assert "429 TooManyRequests" in str(raised.value)
    assert len(sim.graph_requests()) == 3
    assert sleeps.waits == [3.0, 3.0]


async def test_a_long_retry_after_is_left_to_the_worker(
    sim: MicrosoftGraphSimulator, make_client: ClientFactory, sleeps: Sleeps
) -> None:
    client = make_client(max_retry_wait=60)
    sim.inject_fault(429, retry_after=600, times=1)

    with pytest.raises(TransientError) as raised:
        await client.list_task_lists()

    assert raised.value.retry_after == 600.0
    assert sleeps.waits == []


async def test_a_401_refreshes_the_token_once(
    sim: MicrosoftGraphSimulator, client: GraphClient, tokens: SimulatorTokens
) -> None:
    sim.inject_fault(401, times=1, code="InvalidAuthenticationToken")

    await client.list_task_lists()

    assert tokens.calls == [False, True]


async def test_retries_after_a_refresh_do_not_refresh_again(
    sim: MicrosoftGraphSimulator, client: GraphClient, tokens: SimulatorTokens
) -> None:
    sim.inject_fault(401, times=1, code="InvalidAuthenticationToken")
    sim.inject_fault(429, retry_after=1, times=2)

    await client.list_task_lists()

    assert tokens.calls == [False, True, False, False]


async def test_a_second_401_is_permanent(
    sim: MicrosoftGraphSimulator, client: GraphClient, tokens: SimulatorTokens
) -> None:
    sim.inject_fault(401, times=2, code="InvalidAuthenticationToken")

    with pytest.raises(GraphRequestError, match="reconnect") as raised:
        await client.list_task_lists()

    assert raised.value.status_code == 401
    assert tokens.calls == [False, True]


async def test_a_refusal_names_graphs_code_and_message(
    sim: MicrosoftGraphSimulator, client: GraphClient
) -> None:
    sim.inject_fault(
        403, code="ErrorAccessDenied", message="Access is denied. Check credentials."
    )

    with pytest.raises(GraphRequestError) as raised:
        await client.send_mail(
            MailMessage(to=["a@example.com"], subject="s", html_body="b")
        )

    message = str(raised.value)
    assert "403 ErrorAccessDenied (Access is denied. Check credentials.)" in message
    assert "POST /me/sendMail" in message
    assert "permission" in message
    assert raised.value.code == "ErrorAccessDenied"


async def test_server_errors_are_transient(
    sim: MicrosoftGraphSimulator, client: GraphClient, sleeps: Sleeps
) -> None:
    sim.inject_fault(500)

    with pytest.raises(TransientError):
        await client.list_task_lists()

    assert sleeps.waits == []


async def test_a_timeout_is_transient(tokens: SimulatorTokens) -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with GraphClient(
        token_provider=tokens,
        mailbox=ANN,
        app_only=False,
        transport=httpx.MockTransport(time_out),
    ) as client:
        with pytest.raises(TransientError, match="in time"):
            await client.list_task_lists()


async def test_no_token_reaches_the_log(
    sim: MicrosoftGraphSimulator,
    client: GraphClient,
    tokens: SimulatorTokens,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "INFO")
    sim.inject_fault(429, retry_after=1)
    sim.inject_fault(401, code="InvalidAuthenticationToken")

    await client.list_task_lists()

    logged = capsys.readouterr().err
    assert "msgraph_retry" in logged
    assert "msgraph_token_refused" in logged
    for token in sim.access_tokens:
        assert token not in logged


# The per-mailbox limit.


async def test_at_most_four_requests_at_once_per_mailbox(
    sim: MicrosoftGraphSimulator, make_client: ClientFactory
) -> None:
    """Two clients of one mailbox share its four slots; no 429 is met."""
    sim.latency = 0.02
    clients = [make_client(), make_client()]
    task_list = await clients[0].find_or_create_task_list("Deals")

    await asyncio.gather(
        *(
            clients[n % 2].create_task(task_list["id"], TaskFields(title=f"Task {n}"))
            for n in range(12)
        )
    )

    assert sim.max_in_flight[ANN.casefold()] == 4
    assert 429 not in [r.status for r in sim.graph_requests()]
    assert len(sim.tasks(ANN, task_list["id"])) == 12
