"""The SalesTrekker simulator: GraphQL API, webhooks, faults, control API."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from brokerhooks.simulators.salestrekker import (
    EVENTS,
    SalesTrekkerSimulator,
    UnknownRecord,
    seed,
)
from tests.simulators.salestrekker.conftest import API_KEY, GraphQL, Recorder

pytestmark = pytest.mark.anyio

TICKET_UPDATE = (
    "mutation U($id: ID!, $t: TicketInput!) { ticketUpdate(id: $id, ticket: $t) }"
)


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


# -- authentication --------------------------------------------------------------


async def test_authenticate_issues_a_14_day_jwt(
    simulator: SalesTrekkerSimulator,
) -> None:
    token = await GraphQL(simulator).login()

    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    claims = claims_of(token)
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert set(claims) == {"id", "idCurrentOrganization", "iat", "exp"}
    assert claims["exp"] - claims["iat"] == 14 * 24 * 3600
    assert claims["id"] == simulator.OWNER_ID
    assert claims["idCurrentOrganization"] == simulator.ORGANISATION_ID


async def test_wrong_key_gets_no_token(simulator: SalesTrekkerSimulator) -> None:
    response = await GraphQL(simulator).post(
        'mutation { authenticate(apiKey: "nope") { token } }'
    )

    document = response.json()
    assert response.status_code == 200
    assert document["data"] == {"authenticate": None}
    assert document["errors"][0]["message"] == "Invalid API key"
    assert document["errors"][0]["extensions"] == {"code": "UNAUTHENTICATED"}


@pytest.mark.parametrize(
    "token", [None, "garbage", "a.b.c"], ids=["none", "garbage", "forged"]
)
async def test_queries_need_a_valid_token(
    simulator: SalesTrekkerSimulator, token: str | None
) -> None:
    api = GraphQL(simulator)

    response = await api.post("{ labels { id } }", token=token)

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_expired_token_is_refused() -> None:
    simulator = SalesTrekkerSimulator(API_KEY, token_lifetime=timedelta(seconds=-1))
    api = GraphQL(simulator)
    await api.login()

    assert (await api.post("{ labels { id } }")).status_code == 401


async def test_revoked_tokens_fail_and_new_ones_work(
    simulator: SalesTrekkerSimulator, gql: GraphQL
) -> None:
    simulator.revoke_tokens()
    assert (await gql.post("{ labels { id } }")).status_code == 401

    await gql.login()
    assert (await gql.post("{ labels { id } }")).status_code == 200


# -- queries ---------------------------------------------------------------------


async def test_seeded_deal_is_served_with_its_workflow(
    simulator: SalesTrekkerSimulator, gql: GraphQL
) -> None:
    data = await gql.data(
        "query($id: ID!) { ticket(id: $id) { name idStage idWorkflow } "
        "workflows { name stages { name } } labels { name } }",
        {"id": simulator.DEAL_ID},
    )

    assert data["ticket"]["name"] == seed.DEAL_NAME
    assert data["ticket"]["idWorkflow"] == simulator.HOME_LOAN_WORKFLOW_ID
    home_loan = data["workflows"][0]
    assert home_loan["name"] == "Home Loan"
    assert [stage["name"] for stage in home_loan["stages"]] == list(
        seed.HOME_LOAN_STAGES
    )
    assert {label["name"] for label in data["labels"]} >= {
        "Client",
        "Hot lead",
        "Refinance",
    }


async def test_unknown_ids_answer_null(gql: GraphQL) -> None:
    data = await gql.data(
        '{ ticket(id: "x") { id } contact(id: "x") { id } note(id: "x") { id } '
        'workflow(id: "x") { id } }'
    )

    assert data == {"ticket": None, "contact": None, "note": None, "workflow": None}


async def test_seeded_ids_are_stable() -> None:
    first, second = SalesTrekkerSimulator("a"), SalesTrekkerSimulator("b")

    assert seed.stable_id("deal/citizen-purchase") == first.DEAL_ID
    assert set(first.state.tickets) == set(second.state.tickets) == {seed.DEAL_ID}
    assert first.stage_id("9. Settled") == second.stage_id("9. settled")
    assert first.contact(seed.JANE_ID) == second.contact(seed.JANE_ID)


def test_unseeded_simulator_is_empty() -> None:
    simulator = SalesTrekkerSimulator("k", seed=False)

    assert (simulator.state.tickets, simulator.state.workflows) == ({}, {})


async def test_variables_sent_as_a_json_string_are_accepted(gql: GraphQL) -> None:
    response = await gql.post(
        "",
        body={
            "query": "query($id: ID!) { ticket(id: $id) { id } }",
            "variables": json.dumps({"id": seed.DEAL_ID}),
        },
    )

    assert response.json() == {"data": {"ticket": {"id": seed.DEAL_ID}}}


async def test_requests_are_counted_by_operation_name(
    simulator: SalesTrekkerSimulator, gql: GraphQL
) -> None:
    await gql.data("query Labels { labels { id } }")
    await gql.data("query Labels { labels { id } }")
    await gql.data("{ workflows { id } }")

    assert simulator.requests == {"Authenticate": 1, "Labels": 2, "workflows": 1}


async def test_invalid_query_fails_validation(gql: GraphQL) -> None:
    response = await gql.post('{ ticket(id: "x") { colour } }')

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["message"] == "Cannot query field 'colour' on type 'Ticket'."
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


# -- mutations and their webhooks ------------------------------------------------


async def test_ticket_update_sends_one_webhook_per_kind_of_change(
    simulator: SalesTrekkerSimulator, gql: GraphQL, receiver: Recorder
) -> None:
    await gql.data(
        TICKET_UPDATE,
        {
            "id": simulator.DEAL_ID,
            "t": {
                "idStage": simulator.stage_id("4. Lodged"),
                "idOwner": simulator.ASSISTANT_ID,
                "name": "Citizen - Purchase (lodged)",
            },
        },
    )
    await simulator.flush()

    assert receiver.events == ["dealChangesStage", "dealChangesOwner", "dealUpdated"]
    assert {body["id"] for body in receiver.bodies} == {simulator.DEAL_ID}
    deal = simulator.deal(simulator.DEAL_ID)
    assert (deal["idStage"], deal["name"]) == (
        simulator.stage_id("4. Lodged"),
        "Citizen - Purchase (lodged)",
    )


async def test_ticket_update_without_change_sends_nothing(
    simulator: SalesTrekkerSimulator, gql: GraphQL, receiver: Recorder
) -> None:
    unchanged = simulator.deal(simulator.DEAL_ID)["idStage"]

    await gql.data(
        TICKET_UPDATE, {"id": simulator.DEAL_ID, "t": {"idStage": unchanged}}
    )
    await simulator.flush()

    assert receiver.requests == []


async def test_ticket_update_replaces_given_fields_with_explicit_nulls(
    simulator: SalesTrekkerSimulator, gql: GraphQL
) -> None:
    await gql.data(
        TICKET_UPDATE,
        {"id": simulator.DEAL_ID, "t": {"description": None, "assets": None}},
    )

    deal = simulator.deal(simulator.DEAL_ID)
    assert (deal["description"], deal["assets"]) == (None, None)
    assert deal["name"] == seed.DEAL_NAME


async def test_ticket_update_to_a_stage_of_another_workflow_is_refused(
    simulator: SalesTrekkerSimulator, gql: GraphQL, receiver: Recorder
) -> None:
    other = simulator.stage_id("2. Submitted", simulator.ASSET_FINANCE_WORKFLOW_ID)

    response = await gql.post(
        TICKET_UPDATE, {"id": simulator.DEAL_ID, "t": {"idStage": other}}
    )
    await simulator.flush()

    assert (
        "is not a stage of workflow Home Loan"
        in response.json()["errors"][0]["message"]
    )
    assert simulator.deal(simulator.DEAL_ID)["idStage"] != other
    assert receiver.requests == []


async def test_ticket_create_defaults_to_the_first_stage(
    simulator: SalesTrekkerSimulator, gql: GraphQL, receiver: Recorder
) -> None:
    data = await gql.data(
        "mutation($t: TicketInput!) { ticketCreate(ticket: $t) }",
        {"t": {"name": "Patel - Refinance", "idClients": [simulator.RAJ_ID]}},
    )
    await simulator.flush()

    deal = simulator.deal(data["ticketCreate"])
    assert deal["idStage"] == simulator.stage_id("1. Initial Enquiry")
    assert deal["idOwner"] == simulator.OWNER_ID
    assert receiver.bodies == [{"event": "dealCreated", "id": data["ticketCreate"]}]


async def test_contact_create_is_announced(
    simulator: SalesTrekkerSimulator, gql: GraphQL, receiver: Recorder
) -> None:
    data = await gql.data(
        "mutation($c: ContactInput!) { contactCreate(contact: $c) }",
        {
            "c": {
                "idOwner": simulator.OWNER_ID,
                "idLabels": [simulator.label_id("Client")],
                "person": {
                    "information": {"firstName": "Mia", "familyName": "Wong"},
                    "contact": {"email": "mia@example.com"},
                },
            }
        },
    )
    await simulator.flush()

    contact = simulator.contact(data["contactCreate"])
    assert contact["person"]["information"]["firstName"] == "Mia"
    assert contact["person"]["contact"]["email"] == "mia@example.com"
    assert receiver.bodies == [{"event": "contactCreated", "id": data["contactCreate"]}]


async def test_note_create_names_its_deal(
    simulator: SalesTrekkerSimulator, gql: GraphQL, receiver: Recorder
) -> None:
    data = await gql.data(
        "mutation($n: NoteInput!) { noteCreate(note: $n) }",
        {"n": {"idTicket": simulator.DEAL_ID, "content": "Hi", "type": {"name": None}}},
    )
    await simulator.flush()

    assert receiver.bodies == [
        {"event": "noteCreated", "id": data["noteCreate"], "idDeal": simulator.DEAL_ID}
    ]


async def test_note_on_an_unknown_deal_is_refused(gql: GraphQL) -> None:
    response = await gql.post(
        "mutation($n: NoteInput!) { noteCreate(note: $n) }",
        {"n": {"idTicket": "missing", "content": "Hi"}},
    )

    assert response.json()["errors"][0]["message"] == "no deal with id missing"


# -- control API -----------------------------------------------------------------


async def test_every_event_can_be_caused(simulator: SalesTrekkerSimulator) -> None:
    deal = simulator.DEAL_ID
    caused = [
        await simulator.update_contact(simulator.JANE_ID, phone="0400 000 000"),
        await simulator.update_deal(deal, description="Now a refinance"),
        await simulator.set_due_date(deal, date(2031, 3, 1)),
        await simulator.move_deal(deal, "3. Needs Analysis"),
        await simulator.move_deal(deal, "2. Submitted"),
        await simulator.set_status(deal, "lost"),
        await simulator.add_attachment(deal, "payslip.pdf"),
        await simulator.require_document(deal, "Bank statements"),
        await simulator.set_owner(deal, "Sam Lee"),
        await simulator.update_note(simulator.NOTE_ID, "Edited"),
    ]
    await simulator.create_contact("Mia", "Wong", email="mia@example.com")
    await simulator.create_deal("Wong - Purchase")
    await simulator.add_note(deal, "Called")
    await simulator.flush()

    assert caused[4] == ["dealChangesWorkflow", "dealChangesStage"]
    assert {sent.event for sent in simulator.sent_webhooks} == set(EVENTS)
    assert all(sent.ok for sent in simulator.sent_webhooks)


@pytest.mark.parametrize(
    ("status", "flags"),
    [
        ("won", (True, False, True, False)),
        ("lost", (False, True, False, False)),
        ("in_progress", (False, False, False, True)),
    ],
    ids=["won", "lost", "in-progress"],
)
async def test_status_sets_the_flags_s1_sends(
    simulator: SalesTrekkerSimulator, status: str, flags: tuple[bool, ...]
) -> None:
    if status == "in_progress":
        await simulator.set_status(simulator.DEAL_ID, "won")

    events = await simulator.set_status(simulator.DEAL_ID, status)

    deal = simulator.deal(simulator.DEAL_ID)
    assert events == ["dealChangesStatus"]
    assert (
        deal["isWon"],
        deal["isLost"],
        deal["isSettled"],
        deal["isInProgress"],
    ) == flags


async def test_same_due_date_twice_sends_one_webhook(
    simulator: SalesTrekkerSimulator,
) -> None:
    first = await simulator.set_due_date(simulator.DEAL_ID, date(2031, 3, 1))
    second = await simulator.set_due_date(simulator.DEAL_ID, date(2031, 3, 1))

    assert (first, second) == (["dealChangesDueDate"], [])
    midnight_utc = datetime(2031, 3, 1, tzinfo=UTC).timestamp() * 1000
    assert simulator.deal(simulator.DEAL_ID)["dueDate"] == midnight_utc


async def test_unknown_stage_is_refused(simulator: SalesTrekkerSimulator) -> None:
    with pytest.raises(UnknownRecord, match=r"no stage named '42\. Done'"):
        await simulator.move_deal(simulator.DEAL_ID, "42. Done")


# -- webhook delivery ------------------------------------------------------------


async def test_webhooks_go_out_as_salestrekker_sends_them(
    simulator: SalesTrekkerSimulator, receiver: Recorder
) -> None:
    note_id = await simulator.add_note(simulator.DEAL_ID, "Called the client")
    await simulator.flush()

    [request] = receiver.requests
    assert request.method == "POST"
    assert str(request.url) == "http://brokerhooks.test/hooks/salestrekker"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == f"Salestrekker {API_KEY}"
    assert json.loads(request.content) == {
        "event": "noteCreated",
        "id": note_id,
        "idDeal": simulator.DEAL_ID,
    }


async def test_webhooks_keep_the_order_of_the_changes(
    simulator: SalesTrekkerSimulator, receiver: Recorder
) -> None:
    for stage in seed.HOME_LOAN_STAGES[2:]:
        await simulator.move_deal(simulator.DEAL_ID, stage)
    await simulator.set_status(simulator.DEAL_ID, "won")
    await simulator.flush()

    assert receiver.events == ["dealChangesStage"] * 7 + ["dealChangesStatus"]


async def test_refused_webhook_is_recorded_not_raised(
    simulator: SalesTrekkerSimulator, receiver: Recorder
) -> None:
    receiver.status = 500

    await simulator.move_deal(simulator.DEAL_ID, "6. Approved")
    await simulator.flush()

    [sent] = simulator.sent_webhooks
    assert (sent.event, sent.status, sent.ok) == ("dealChangesStage", 500, False)


async def test_unreachable_receiver_is_recorded_not_raised() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    simulator = SalesTrekkerSimulator(
        API_KEY, "http://nowhere.test/", webhook_transport=httpx.MockTransport(refuse)
    )

    await simulator.move_deal(simulator.DEAL_ID, "6. Approved")
    await simulator.flush()

    [sent] = simulator.sent_webhooks
    assert (sent.status, sent.error) == (None, "ConnectError")


async def test_without_url_webhooks_are_only_recorded() -> None:
    simulator = SalesTrekkerSimulator(API_KEY)

    await simulator.move_deal(simulator.DEAL_ID, "6. Approved")
    await simulator.flush()

    [sent] = simulator.sent_webhooks
    assert (sent.event, sent.status) == ("dealChangesStage", None)


# -- faults ----------------------------------------------------------------------


async def test_removed_field_fails_validation_and_leaves_introspection(
    simulator: SalesTrekkerSimulator, gql: GraphQL
) -> None:
    # Validated once against the full schema: the kept result must not
    # outlive the schema it was checked against.
    assert (await gql.post('{ ticket(id: "x") { dueDate } }')).status_code == 200
    simulator.remove_field("Ticket", "dueDate")

    response = await gql.post('{ ticket(id: "x") { dueDate } }')
    fields = await gql.data('{ __type(name: "Ticket") { fields { name } } }')

    assert response.status_code == 400
    assert "Cannot query field 'dueDate'" in response.json()["errors"][0]["message"]
    names = {field["name"] for field in fields["__type"]["fields"]}
    assert "dueDate" not in names
    assert "idStage" in names

    simulator.restore_schema()
    assert (await gql.post('{ ticket(id: "x") { dueDate } }')).status_code == 200


def test_removing_a_field_the_schema_lacks_is_refused(
    simulator: SalesTrekkerSimulator,
) -> None:
    with pytest.raises(ValueError, match=r"no field Ticket\.colour"):
        simulator.remove_field("Ticket", "colour")

    assert simulator.removed_fields == []


async def test_failures_are_injected_by_count(
    simulator: SalesTrekkerSimulator, gql: GraphQL
) -> None:
    simulator.fail_requests(2, status=503, retry_after=3)

    answers = [await gql.post("{ labels { id } }") for _ in range(3)]

    assert [answer.status_code for answer in answers] == [503, 503, 200]
    assert answers[0].headers["Retry-After"] == "3"


async def test_failure_rate_fails_that_share_of_requests() -> None:
    simulator = SalesTrekkerSimulator(API_KEY, random_seed=7)
    api = GraphQL(simulator)
    await api.login()
    simulator.faults.failure_rate = 1.0

    assert (await api.post("{ labels { id } }")).status_code == 503
    simulator.faults.failure_rate = 0.0
    assert (await api.post("{ labels { id } }")).status_code == 200


# -- HTTP control API ------------------------------------------------------------


async def control(
    simulator: SalesTrekkerSimulator, method: str, path: str, body: object = None
) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=simulator.transport(), base_url="http://sim.test"
    ) as client:
        return await client.request(method, "/_sim" + path, json=body)


async def test_http_control_drives_a_deal(
    simulator: SalesTrekkerSimulator, receiver: Recorder
) -> None:
    created = await control(
        simulator, "POST", "/deals", {"name": "Lee - Purchase", "stage": "2. Fact Find"}
    )
    deal_id = created.json()["id"]
    moved = await control(
        simulator, "POST", f"/deals/{deal_id}/stage", {"stage": "6. Approved"}
    )
    dated = await control(
        simulator, "POST", f"/deals/{deal_id}/due-date", {"dueDate": "2031-03-01"}
    )
    noted = await control(
        simulator, "POST", f"/deals/{deal_id}/notes", {"content": "Approved!"}
    )
    flushed = await control(simulator, "POST", "/flush")

    assert created.status_code == 201
    assert moved.json() == {"events": ["dealChangesStage"]}
    assert dated.json() == {"events": ["dealChangesDueDate"]}
    assert noted.status_code == 201
    assert flushed.json() == {"webhooks": 4}
    assert receiver.events == [
        "dealCreated",
        "dealChangesStage",
        "dealChangesDueDate",
        "noteCreated",
    ]
    webhooks = (await control(simulator, "GET", "/webhooks")).json()
    assert [sent["status"] for sent in webhooks] == [200] * 4


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/deals/missing/stage", {"stage": "6. Approved"}, 404, "no deal with id"),
        (f"/deals/{seed.DEAL_ID}/stage", {"stage": "42. Done"}, 404, "no stage"),
        (f"/deals/{seed.DEAL_ID}/stage", {}, 400, "missing 'stage'"),
        (f"/deals/{seed.DEAL_ID}/status", {"status": "meh"}, 400, "won, lost"),
        (f"/deals/{seed.DEAL_ID}", {"colour": "red"}, 400, "no field colour"),
        ("/faults", {"remove_fields": ["Ticket.colour"]}, 400, "no field"),
        ("/faults", {"latency": -1}, 400, "latency"),
        ("/faults", {"surprise": True}, 400, "unknown fault"),
    ],
    ids=[
        "unknown-deal",
        "unknown-stage",
        "missing-stage",
        "bad-status",
        "bad-field",
        "bad-removal",
        "negative-latency",
        "unknown-fault",
    ],
)
async def test_http_control_refuses_clearly(
    simulator: SalesTrekkerSimulator,
    path: str,
    body: dict[str, Any],
    status: int,
    error: str,
) -> None:
    response = await control(simulator, "POST", path, body)

    assert response.status_code == status
    assert error in response.json()["error"]


async def test_http_control_sets_faults(
    simulator: SalesTrekkerSimulator, gql: GraphQL
) -> None:
    response = await control(
        simulator,
        "POST",
        "/faults",
        {"remove_fields": ["Query.note"], "fail_next": 1, "expire_tokens": False},
    )

    assert response.json()["removed_fields"] == ["Query.note"]
    assert (await gql.post("{ labels { id } }")).status_code == 503
    assert (await gql.post('{ note(id: "x") { id } }')).status_code == 400
    requests = (await control(simulator, "GET", "/requests")).json()
    assert requests == {"Authenticate": 1, "labels": 1, "note": 1}
