"""The SalesTrekker client against the simulator, in-process and over HTTP."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog

from brokerhooks.connectors.errors import ConnectorError, TransientError
from brokerhooks.connectors.salestrekker import (
    ApiKeyRejectedError,
    MemoryTokenStore,
    NotFoundError,
    RateLimits,
    RequestRejectedError,
    SalesTrekkerClient,
    SchemaMismatchError,
    TokenBucket,
    WorkflowCache,
)
from brokerhooks.security.secrets import Secret
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from tests.connectors.salestrekker.conftest import (
    API_KEY,
    ClientFactory,
    mock_transport,
)
from tests.servers import free_port, serve_in_thread

pytestmark = pytest.mark.anyio

WRONG_KEY = "0000000000wrongwrongwrong0000000000000000"


def jwt_claims(token: Secret) -> dict[str, Any]:
    payload = token.reveal().split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


# -- reads and writes ----------------------------------------------------------


async def test_deal_comes_with_workflow_stage_and_labels_named(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    deal = await make_client().fetch_deal(simulator.DEAL_ID)

    assert deal["id"] == simulator.DEAL_ID
    assert deal["name"] == "Citizen - Purchase, 12 Wharf St"
    assert deal["idClients"] == [simulator.JANE_ID]
    assert deal["values"] == {"onceOff": 650000.0}
    assert deal["workflow"] == {
        "id": simulator.HOME_LOAN_WORKFLOW_ID,
        "name": "Home Loan",
    }
    assert deal["stage"] == {
        "id": simulator.stage_id("2. Fact Find"),
        "name": "2. Fact Find",
    }
    assert deal["labels"] == [
        {"id": simulator.label_id("Hot lead"), "name": "Hot lead"}
    ]
    assert (deal["isInProgress"], deal["isWon"], deal["dueDate"]) == (True, False, None)


async def test_deal_follows_changes_made_in_salestrekker(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    await simulator.move_deal(simulator.DEAL_ID, "6. Approved")
    await simulator.set_due_date(simulator.DEAL_ID, datetime(2030, 5, 1, tzinfo=UTC))
    await simulator.set_owner(simulator.DEAL_ID, "Sam Lee")

    deal = await make_client().fetch_deal(simulator.DEAL_ID)

    assert deal["stage"]["name"] == "6. Approved"
    assert deal["dueDate"] == datetime(2030, 5, 1, tzinfo=UTC).timestamp() * 1000
    assert deal["idOwner"] == simulator.ASSISTANT_ID


async def test_contact_and_note_are_read(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    client = make_client()

    contact = await client.fetch_contact(simulator.JANE_ID)
    note = await client.fetch_note(simulator.NOTE_ID)

    assert contact["person"]["information"]["firstName"] == "Jane"
    assert contact["person"]["contact"]["email"] == "jane.citizen@example.com"
    assert contact["idLabels"] == [simulator.label_id("Client")]
    assert note["idTicket"] == simulator.DEAL_ID
    assert note["type"] == {"name": "comment"}


async def test_created_note_is_stored_and_announced(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    note_id = await make_client().create_note(
        simulator.DEAL_ID, "Valuation came back", owner_id=simulator.ASSISTANT_ID
    )
    await simulator.flush()

    stored = simulator.note(note_id)
    assert (stored["content"], stored["idOwner"]) == (
        "Valuation came back",
        simulator.ASSISTANT_ID,
    )
    assert [(w.event, w.id, w.deal_id) for w in simulator.sent_webhooks] == [
        ("noteCreated", note_id, simulator.DEAL_ID)
    ]


async def test_note_without_owner_belongs_to_the_key_user(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    note_id = await make_client().create_note(simulator.DEAL_ID, "Called the bank")

    assert simulator.note(note_id)["idOwner"] == simulator.OWNER_ID


async def test_client_works_over_real_http(simulator: SalesTrekkerSimulator) -> None:
    with serve_in_thread(simulator.app) as url:
        async with _client_of(url) as client:
            deal = await client.fetch_deal(simulator.DEAL_ID)

    assert deal["stage"]["name"] == "2. Fact Find"
    assert simulator.requests["Authenticate"] == 1


@asynccontextmanager
async def _client_of(url: str, **overrides: Any) -> AsyncIterator[SalesTrekkerClient]:
    """A client of a simulator served over loopback HTTP."""
    arguments: dict[str, Any] = {
        "broker_id": "loopback-broker",
        "base_url": url,
        "api_key": Secret(API_KEY),
        "tokens": MemoryTokenStore(),
        "rate_limits": RateLimits(),
        "rate_per_second": 1000.0,
        **overrides,
    }
    client = SalesTrekkerClient(**arguments)
    try:
        yield client
    finally:
        await client.aclose()


# -- tokens --------------------------------------------------------------------


async def test_token_is_kept_and_reused(
    simulator: SalesTrekkerSimulator,
    make_client: ClientFactory,
    tokens: MemoryTokenStore,
) -> None:
    first = make_client()
    await first.fetch_contact(simulator.JANE_ID)
    await first.fetch_contact(simulator.RAJ_ID)
    # A second client (another worker, a restart) finds the stored token.
    await make_client().fetch_contact(simulator.JANE_ID)

    assert simulator.requests["Authenticate"] == 1
    assert simulator.requests["Contact"] == 3
    [(token, expires_at)] = tokens.tokens.values()
    assert expires_at == datetime.fromtimestamp(float(jwt_claims(token)["exp"]), UTC)
    assert timedelta(days=13, hours=23) < expires_at - datetime.now(UTC)


async def test_token_expiring_within_the_hour_is_replaced_before_use(
    make_client: ClientFactory,
) -> None:
    simulator = SalesTrekkerSimulator(API_KEY, token_lifetime=timedelta(minutes=30))
    client = make_client(transport=simulator.transport())

    await client.fetch_contact(simulator.JANE_ID)
    await client.fetch_contact(simulator.JANE_ID)

    assert simulator.requests["Authenticate"] == 2


async def test_stored_token_near_expiry_is_not_sent(
    simulator: SalesTrekkerSimulator,
    make_client: ClientFactory,
    tokens: MemoryTokenStore,
) -> None:
    client = make_client()
    old = Secret("old-token")
    tokens.tokens[client.broker_id] = (old, datetime.now(UTC) + timedelta(minutes=5))

    await client.fetch_contact(simulator.JANE_ID)

    assert simulator.requests["Authenticate"] == 1
    assert tokens.tokens[client.broker_id][0] != old


async def test_revoked_token_is_replaced_and_the_call_retried(
    simulator: SalesTrekkerSimulator,
    make_client: ClientFactory,
    tokens: MemoryTokenStore,
) -> None:
    client = make_client()
    await client.fetch_contact(simulator.JANE_ID)
    [(before, _)] = tokens.tokens.values()

    simulator.revoke_tokens()
    contact = await client.fetch_contact(simulator.JANE_ID)

    assert contact["id"] == simulator.JANE_ID
    assert simulator.requests["Authenticate"] == 2
    assert simulator.requests["Contact"] == 3
    [(after, _)] = tokens.tokens.values()
    assert after != before


async def test_token_refused_twice_is_transient_after_one_retry(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    simulator.faults.expire_tokens = True

    with pytest.raises(TransientError, match="just issued"):
        await make_client().fetch_contact(simulator.JANE_ID)

    assert simulator.requests["Authenticate"] == 2
    assert simulator.requests["Contact"] == 2


async def test_graphql_error_about_the_token_also_reauthenticates(
    make_client: ClientFactory,
) -> None:
    expired = httpx.Response(
        200,
        json={"errors": [{"message": "jwt expired"}], "data": {"contact": None}},
    )
    ok = httpx.Response(200, json={"data": {"contact": {"id": "c1"}}})
    transport, seen = mock_transport(expired, ok)

    contact = await make_client(transport=transport).fetch_contact("c1")

    assert contact == {"id": "c1"}
    assert sum(b"authenticate(" in request.content for request in seen) == 2


async def test_wrong_api_key_asks_for_rotation_without_showing_the_key(
    make_client: ClientFactory,
) -> None:
    client = make_client(api_key=Secret(WRONG_KEY))

    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(ApiKeyRejectedError) as caught,
    ):
        await client.fetch_deal("any")

    message = str(caught.value)
    assert "brokerhooks brokers rotate-key acme" in message
    assert "Invalid API key" in message
    for text in (message, repr(caught.value), repr(client), str(logs)):
        assert WRONG_KEY not in text
        assert API_KEY not in text
    assert isinstance(caught.value, ConnectorError)


async def test_no_token_appears_in_logs_or_errors(
    simulator: SalesTrekkerSimulator,
    make_client: ClientFactory,
    tokens: MemoryTokenStore,
) -> None:
    client = make_client()
    await client.fetch_contact(simulator.JANE_ID)
    [(token, _)] = tokens.tokens.values()
    simulator.faults.expire_tokens = True

    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(TransientError) as caught,
    ):
        await client.fetch_contact(simulator.JANE_ID)

    assert logs, "failed requests are logged"
    assert all(line["log_level"] == "warning" for line in logs if "operation" in line)
    for text in (str(caught.value), str(logs)):
        assert token.reveal() not in text
        assert API_KEY not in text


# -- failures ------------------------------------------------------------------


async def test_server_errors_are_transient(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    client = make_client()
    await client.fetch_contact(simulator.JANE_ID)
    simulator.fail_requests(1, status=502)

    with pytest.raises(TransientError, match="HTTP 502"):
        await client.fetch_contact(simulator.JANE_ID)
    # The fault is spent: the next call works.
    assert (await client.fetch_contact(simulator.JANE_ID))["id"] == simulator.JANE_ID


async def test_too_many_requests_keeps_retry_after(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    client = make_client()
    await client.fetch_contact(simulator.JANE_ID)
    simulator.fail_requests(1, status=429, retry_after=7)

    with pytest.raises(TransientError) as caught:
        await client.fetch_contact(simulator.JANE_ID)

    assert caught.value.retry_after == 7.0


async def test_retry_after_as_a_date_is_read(make_client: ClientFactory) -> None:
    when = datetime.now(UTC) + timedelta(minutes=10)
    busy = httpx.Response(
        503, headers={"Retry-After": when.strftime("%a, %d %b %Y %H:%M:%S GMT")}
    )
    transport, _ = mock_transport(busy)

    with pytest.raises(TransientError) as caught:
        await make_client(transport=transport).fetch_contact("c1")

    assert caught.value.retry_after is not None
    assert 500 < caught.value.retry_after <= 600


async def test_slow_answer_times_out_as_transient(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    client = make_client(timeout=0.2)
    await client.fetch_contact(simulator.JANE_ID)
    simulator.faults.latency = 5

    with pytest.raises(TransientError, match=r"did not answer Contact within 0\.2 s"):
        await client.fetch_contact(simulator.JANE_ID)


async def test_slow_answer_over_http_times_out_as_transient(
    simulator: SalesTrekkerSimulator,
) -> None:
    # One second is far beyond the client's timeout, and short enough not to
    # hold up the server's shutdown for long.
    simulator.faults.latency = 1.0
    with serve_in_thread(simulator.app) as url:
        async with _client_of(url, timeout=0.2) as client:
            with pytest.raises(TransientError, match="did not answer"):
                await client.fetch_deal(simulator.DEAL_ID)


async def test_unreachable_tenant_is_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    async with _client_of(url) as client:
        with pytest.raises(TransientError, match="could not reach SalesTrekker"):
            await client.fetch_deal("any")


@pytest.mark.parametrize(
    ("method", "entity"),
    [("fetch_deal", "deal"), ("fetch_contact", "contact"), ("fetch_note", "note")],
    ids=["deal", "contact", "note"],
)
async def test_missing_entity_is_not_found(
    make_client: ClientFactory, method: str, entity: str
) -> None:
    missing = "8d6f9a52-0000-4000-8000-000000000000"

    with pytest.raises(NotFoundError) as caught:
        await getattr(make_client(), method)(missing)

    assert f"no {entity} {missing}" in str(caught.value)
    assert (caught.value.entity, caught.value.entity_id) == (entity, missing)


async def test_removed_field_is_a_schema_mismatch(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    simulator.remove_field("Ticket", "idStage")

    with pytest.raises(SchemaMismatchError) as caught:
        await make_client().fetch_deal(simulator.DEAL_ID)

    message = str(caught.value)
    assert "idStage" in message
    assert "brokerhooks salestrekker check --broker acme" in message
    assert "replay" in message


GUESSED_TICKET_FIELDS = ("dueDate", "isWon", "isLost", "isSettled", "isInProgress")


async def test_a_tenant_without_the_guessed_ticket_fields_is_still_read(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    for field in GUESSED_TICKET_FIELDS:
        simulator.remove_field("Ticket", field)
    now = [1000.0]
    client = make_client(workflow_cache=WorkflowCache(300, clock=lambda: now[0]))

    first = await client.fetch_deal(simulator.DEAL_ID)
    second = await client.fetch_deal(simulator.DEAL_ID)
    after_first = dict(simulator.requests)
    now[0] += 301  # past the cache's ttl: the full query is tried again
    await client.fetch_deal(simulator.DEAL_ID)

    assert first == second
    assert first["id"] == simulator.DEAL_ID
    assert first["stage"]["name"] is not None
    assert {field: first[field] for field in GUESSED_TICKET_FIELDS} == dict.fromkeys(
        GUESSED_TICKET_FIELDS
    )
    # The rejected Ticket once, then TicketSeen straight away.
    assert (after_first["Ticket"], after_first["TicketSeen"]) == (1, 2)
    assert (simulator.requests["Ticket"], simulator.requests["TicketSeen"]) == (2, 3)


async def test_a_tenant_with_the_guessed_ticket_fields_gets_them(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    deal = await make_client().fetch_deal(simulator.DEAL_ID)

    assert set(GUESSED_TICKET_FIELDS) <= deal.keys()
    assert isinstance(deal["isWon"], bool)
    assert simulator.requests["Ticket"] == 1
    assert simulator.requests["TicketSeen"] == 0


async def test_missing_note_query_is_a_schema_mismatch(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    simulator.remove_field("Query", "note")
    client = make_client()

    with pytest.raises(SchemaMismatchError, match="note"):
        await client.fetch_note(simulator.NOTE_ID)
    # The rest of the API still answers.
    assert (await client.fetch_deal(simulator.DEAL_ID))["id"] == simulator.DEAL_ID


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            httpx.Response(
                200, json={"errors": [{"message": "Database timeout, try again"}]}
            ),
            TransientError,
        ),
        (
            httpx.Response(
                200,
                json={
                    "errors": [
                        {"message": "x", "extensions": {"code": "SERVICE_UNAVAILABLE"}}
                    ]
                },
            ),
            TransientError,
        ),
        (
            httpx.Response(200, json={"errors": [{"message": "Ticket is archived"}]}),
            RequestRejectedError,
        ),
        (
            httpx.Response(
                200,
                json={
                    "errors": [
                        {"message": "Not allowed", "extensions": {"code": "FORBIDDEN"}}
                    ]
                },
            ),
            RequestRejectedError,
        ),
        (
            httpx.Response(
                400,
                json={"errors": [{"message": 'Unknown argument "id" on field "x"'}]},
            ),
            SchemaMismatchError,
        ),
        (httpx.Response(404, text="Not Found"), SchemaMismatchError),
        (httpx.Response(400, text="Bad Request"), RequestRejectedError),
        (httpx.Response(200, text="<html>maintenance</html>"), TransientError),
        (httpx.Response(500, json={"errors": [{"message": "boom"}]}), TransientError),
    ],
    ids=[
        "graphql-timeout",
        "graphql-unavailable-code",
        "graphql-other",
        "graphql-forbidden",
        "unknown-argument",
        "no-endpoint",
        "bad-request",
        "html-page",
        "server-error",
    ],
)
async def test_answers_become_errors_by_what_can_be_done(
    make_client: ClientFactory,
    answer: httpx.Response,
    error: type[ConnectorError],
) -> None:
    transport, _ = mock_transport(answer)

    with pytest.raises(ConnectorError) as caught:
        await make_client(transport=transport).fetch_contact("c1")

    assert type(caught.value) is error


async def test_server_message_echoing_the_key_is_masked(
    make_client: ClientFactory,
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"errors": [{"message": f"Bad key {API_KEY} given"}]}
        )

    transport = httpx.MockTransport(echo)

    with pytest.raises(ApiKeyRejectedError) as caught:
        await make_client(transport=transport).fetch_contact("c1")

    assert API_KEY not in str(caught.value)
    assert "**********" in str(caught.value)


# -- workflow and label cache ----------------------------------------------------


async def test_workflow_and_labels_are_fetched_once_per_broker(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    cache = WorkflowCache(ttl=300)
    await make_client(workflow_cache=cache).fetch_deal(simulator.DEAL_ID)
    await make_client(workflow_cache=cache).fetch_deal(simulator.DEAL_ID)

    assert simulator.requests["Ticket"] == 2
    assert simulator.requests["Workflow"] == 1
    assert simulator.requests["Labels"] == 1


async def test_separate_caches_fetch_separately(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    await make_client().fetch_deal(simulator.DEAL_ID)
    await make_client().fetch_deal(simulator.DEAL_ID)

    assert simulator.requests["Workflow"] == 2


async def test_cached_workflow_expires_after_ttl(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    now = [1000.0]
    client = make_client(workflow_cache=WorkflowCache(ttl=60, clock=lambda: now[0]))

    await client.fetch_deal(simulator.DEAL_ID)
    now[0] += 59
    await client.fetch_deal(simulator.DEAL_ID)
    assert simulator.requests["Workflow"] == 1

    now[0] += 2
    await client.fetch_deal(simulator.DEAL_ID)
    assert simulator.requests["Workflow"] == 2


async def test_stage_added_after_caching_is_found_by_one_refetch(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    client = make_client()
    await client.fetch_deal(simulator.DEAL_ID)
    workflow = simulator.state.workflows[simulator.HOME_LOAN_WORKFLOW_ID]
    workflow["stages"].append({"id": "stage-new", "name": "10. Post Settlement"})
    await simulator.update_deal(simulator.DEAL_ID, idStage="stage-new")

    deal = await client.fetch_deal(simulator.DEAL_ID)

    assert deal["stage"] == {"id": "stage-new", "name": "10. Post Settlement"}
    assert simulator.requests["Workflow"] == 2


async def test_stage_unknown_even_after_refetch_has_no_name(
    make_client: ClientFactory,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        data: dict[str, Any]
        if b"query Workflow" in request.content:
            data = {"workflow": {"id": "w", "name": "Home Loan", "stages": []}}
        elif b"query Labels" in request.content:
            data = {"labels": []}
        else:
            ticket = {"id": "d", "idWorkflow": "w", "idStage": "s", "idLabels": ["l"]}
            data = {"ticket": ticket}
        return httpx.Response(200, json={"data": data})

    transport, seen = mock_transport(answer)
    client = make_client(transport=transport)
    await client.fetch_deal("d")
    deal = await client.fetch_deal("d")

    assert deal["workflow"] == {"id": "w", "name": "Home Loan"}
    assert deal["stage"] == {"id": "s", "name": None}
    assert deal["labels"] == [{"id": "l", "name": None}]
    # First call fetched both; the second refetched each once.
    assert sum(b"query Workflow" in r.content for r in seen) == 2
    assert sum(b"query Labels" in r.content for r in seen) == 2


async def test_label_added_after_caching_is_found_by_one_refetch(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    client = make_client()
    await client.fetch_deal(simulator.DEAL_ID)
    simulator.state.labels["label-new"] = {"id": "label-new", "name": "VIP"}
    await simulator.update_deal(simulator.DEAL_ID, idLabels=["label-new"])

    deal = await client.fetch_deal(simulator.DEAL_ID)

    assert deal["labels"] == [{"id": "label-new", "name": "VIP"}]
    assert simulator.requests["Labels"] == 2


# -- rate limit ------------------------------------------------------------------


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_requests_of_a_broker_are_paced(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    fake = FakeTime()
    limits = RateLimits(clock=fake.clock, sleep=fake.sleep)
    client = make_client(rate_per_second=2.0, rate_limits=limits)

    for _ in range(4):
        await client.fetch_contact(simulator.JANE_ID)

    # Authenticate + 4 Contact: a burst of 2, then one every half second.
    assert sum(simulator.requests.values()) == 5
    assert fake.sleeps == [0.5, 0.5, 0.5]


async def test_clients_of_one_broker_share_its_budget(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    fake = FakeTime()
    limits = RateLimits(clock=fake.clock, sleep=fake.sleep)
    first = make_client(rate_per_second=1.0, rate_limits=limits)
    second = make_client(rate_per_second=1.0, rate_limits=limits)
    other_broker = make_client(
        broker_id="another-broker", rate_per_second=1.0, rate_limits=limits
    )

    await first.fetch_contact(simulator.JANE_ID)  # authenticate + contact
    await second.fetch_contact(simulator.JANE_ID)
    assert len(fake.sleeps) == 2

    await other_broker.fetch_contact(simulator.JANE_ID)  # its own full bucket
    assert len(fake.sleeps) == 3


async def test_bucket_refills_while_idle() -> None:
    fake = FakeTime()
    bucket = TokenBucket(4.0, clock=fake.clock, sleep=fake.sleep)

    for _ in range(5):
        await bucket.acquire()
    fake.now += 10  # idle: the bucket fills up to its burst, no further
    for _ in range(5):
        await bucket.acquire()

    assert fake.sleeps == [0.25, 0.25]


class _ClosingRecorder(httpx.AsyncBaseTransport):
    """Passes requests on; remembers whether anyone closed it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        self.closed = True


async def test_closing_a_client_leaves_a_shared_transport_open(
    simulator: SalesTrekkerSimulator, make_client: ClientFactory
) -> None:
    shared = _ClosingRecorder(simulator.transport())
    first, second = make_client(transport=shared), make_client(transport=shared)
    await first.fetch_contact(simulator.JANE_ID)

    await first.aclose()

    assert not shared.closed
    assert (await second.fetch_contact(simulator.JANE_ID))["id"] == simulator.JANE_ID
