"""The SalesTrekker webhook endpoint, over real HTTP, against the real store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
from sqlalchemy import Engine, select

from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.runtime import Runtime
from brokerhooks.store.database import make_engine, transaction
from brokerhooks.store.events import get_event, list_events
from brokerhooks.store.models import AuthFailure, Delivery
from tests.helpers import add_broker, wait_until
from tests.servers import serve_in_thread

KEY = "0123456789abcdef0123456789abcdef01234567"
DEAL = "5b0a9a57-5b1c-4f0e-9a39-2f1c0b7c2f10"


@dataclass
class Service:
    url: str
    runtime: Runtime
    engine: Engine

    def post(
        self,
        body: object = None,
        *,
        key: str | None = KEY,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        method: str = "POST",
    ) -> httpx.Response:
        sent = {"Content-Type": "application/json"}
        if key is not None:
            sent["Authorization"] = f"Salestrekker {key}"
        sent.update(headers or {})
        if content is None and body is not None:
            content = json.dumps(body).encode()
        return httpx.request(
            method, self.url + "/hooks/salestrekker", headers=sent, content=content
        )

    def deliveries(self) -> list[Delivery]:
        self.flush()
        with transaction(self.engine) as connection:
            rows = connection.execute(
                select(Delivery.__table__).order_by(Delivery.received_at)
            ).all()
        return [Delivery(**row._mapping) for row in rows]

    def flush(self) -> None:
        """Wait until queued delivery records are committed."""
        for _ in range(200):
            if not self.runtime.writer._pending:
                break
            httpx.get(self.url + "/healthz")
        # One more round trip lets an in-flight batch finish.
        httpx.get(self.url + "/healthz")


def make_service(settings: Settings, engine: Engine) -> Iterator[Service]:
    runtime = Runtime.build(settings, engine)
    add_broker(engine, runtime.vault, api_key=KEY)
    with serve_in_thread(create_app(settings, runtime)) as url:
        yield Service(url, runtime, engine)


@pytest.fixture
def service(settings: Settings, engine: Engine) -> Iterator[Service]:
    yield from make_service(settings, engine)


def deal_event(name: str = "dealChangesStage", **extra: object) -> dict[str, object]:
    return {"event": name, "id": DEAL, **extra}


def test_accepted_event_is_stored_before_the_answer(service: Service) -> None:
    response = service.post(deal_event())

    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "accepted"
    with transaction(service.engine) as connection:
        stored = get_event(connection, answer["event"])
    assert stored.type == "dealChangesStage"
    assert stored.entity_id == DEAL
    assert stored.deal_id == DEAL
    assert stored.status == "received"
    assert stored.broker == "acme"
    assert json.loads(stored.payload) == deal_event()


@pytest.mark.parametrize(
    ("sent", "canonical"),
    [
        ("DealCreated", "dealCreated"),
        ("DEALCHANGESSTAGE", "dealChangesStage"),
        (" contactupdated ", "contactUpdated"),
    ],
    ids=["pascal", "upper", "spaces"],
)
def test_event_names_match_case_insensitively(
    service: Service, sent: str, canonical: str
) -> None:
    response = service.post({"event": sent, "id": DEAL})

    assert response.status_code == 200
    with transaction(service.engine) as connection:
        assert get_event(connection, response.json()["event"]).type == canonical


def test_contact_events_have_no_deal(service: Service) -> None:
    response = service.post({"event": "contactCreated", "id": DEAL})

    with transaction(service.engine) as connection:
        stored = get_event(connection, response.json()["event"])
    assert stored.deal_id is None
    assert stored.entity_id == DEAL


def test_note_events_belong_to_their_deal(service: Service) -> None:
    note = str(uuid.uuid4())
    response = service.post({"event": "noteCreated", "id": note, "idDeal": DEAL})

    with transaction(service.engine) as connection:
        stored = get_event(connection, response.json()["event"])
    assert (stored.entity_id, stored.deal_id) == (note, DEAL)


def test_unknown_event_is_stored_as_unsupported(service: Service) -> None:
    response = service.post({"event": "dealRetrieved", "id": DEAL})

    assert response.status_code == 200
    assert "unsupported" in response.json()["warning"]
    with transaction(service.engine) as connection:
        stored = get_event(connection, response.json()["event"])
    assert (stored.type, stored.status) == ("dealRetrieved", "unsupported")


@pytest.mark.parametrize(
    "header",
    [
        "salestrekker " + KEY,
        "SALESTREKKER " + KEY,
        f"Salestrekker   {KEY}",
    ],
    ids=["lower", "upper", "spaces"],
)
def test_scheme_is_case_insensitive_and_spaces_are_ignored(
    service: Service, header: str
) -> None:
    response = service.post(deal_event(), key=None, headers={"Authorization": header})

    assert response.status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer " + KEY,
        "Salestrekker",
        "Salestrekker two words",
        "Salestrekker wrong-key",
    ],
    ids=["missing", "other-scheme", "no-key", "two-words", "unknown"],
)
def test_bad_keys_get_one_401_body(service: Service, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}

    response = service.post(deal_event(), key=None, headers=headers)

    assert response.status_code == 401
    assert response.json() == {
        "error": "unauthorized",
        "detail": "send the broker's SalesTrekker API key as "
        "'Authorization: Salestrekker <key>'",
    }
    with transaction(service.engine) as connection:
        assert list_events(connection) == []


def test_repeated_failures_from_one_address_are_throttled(
    settings: Settings, engine: Engine
) -> None:
    throttled = settings.model_copy(
        update={"auth_failure_limit": 3, "auth_cooldown_seconds": 120}
    )
    for service in make_service(throttled, engine):
        statuses = [
            service.post(deal_event(), key="wrong").status_code for _ in range(3)
        ]
        blocked = service.post(deal_event())

        assert statuses == [401, 401, 401]
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["Retry-After"]) <= 121
        outcomes = [delivery.outcome for delivery in service.deliveries()]
        assert outcomes == ["unauthorized"] * 3 + ["throttled"]


def test_processes_count_failures_together(settings: Settings, engine: Engine) -> None:
    """Two servers on one store: a guesser gains nothing by switching."""
    throttled = settings.model_copy(
        update={"auth_failure_limit": 4, "auth_cooldown_seconds": 120}
    )

    def stored() -> tuple[int, bool]:
        with transaction(engine) as connection:
            row = connection.execute(
                select(AuthFailure.count, AuthFailure.blocked_until)
            ).one_or_none()
        return (0, False) if row is None else (row[0], row[1] is not None)

    for first in make_service(throttled, engine):
        other = Runtime.build(throttled, engine)
        with serve_in_thread(create_app(throttled, other)) as other_url:
            second = Service(other_url, other, engine)
            early = [first.post(deal_event(), key="wrong").status_code for _ in "ab"]
            wait_until(lambda: stored() == (2, False), lambda: str(stored()))
            later = [second.post(deal_event(), key="wrong").status_code for _ in "ab"]
            # The second server's batch brings the count to the limit.
            wait_until(lambda: stored()[1], lambda: str(stored()))
            blocked_second = second.post(deal_event())
            # The first has not heard yet: one more try, whose batch tells it.
            one_more = first.post(deal_event(), key="wrong")
            learnt = partial(first.runtime.throttle.retry_after, "127.0.0.1")
            wait_until(
                lambda: learnt() > 0,  # noqa: B023 (called within the iteration)
                lambda: "the first server never learnt of the block",
            )
            blocked_first = first.post(deal_event())

        assert early == later == [401, 401]
        assert blocked_second.status_code == 429
        assert one_more.status_code == 401
        assert blocked_first.status_code == 429
        with transaction(engine) as connection:
            subjects = list(connection.scalars(select(AuthFailure.subject)))
        assert subjects
        assert all("127.0.0.1" not in subject for subject in subjects)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not list"),
        (b'{"id": "%s"}' % DEAL.encode(), "'event' must be a non-empty string"),
        (b'{"event": 7, "id": "%s"}' % DEAL.encode(), "'event' must be"),
        (b'{"event": "dealCreated"}', "'id' is required"),
        (b'{"event": "dealCreated", "id": "42"}', "'id' is not a UUID"),
        (b'{"event": "dealCreated", "id": 42}', "'id' must be a UUID string"),
        (
            b'{"event": "noteCreated", "id": "%s"}' % DEAL.encode(),
            "'idDeal' is required for noteCreated",
        ),
        (
            b'{"event": "noteUpdated", "id": "%s", "idDeal": "x"}' % DEAL.encode(),
            "'idDeal' is not a UUID",
        ),
        (b"\xff\xfe", "not valid JSON"),
    ],
    ids=[
        "not-json",
        "array",
        "no-event",
        "event-not-string",
        "no-id",
        "id-not-uuid",
        "id-number",
        "note-without-deal",
        "note-bad-deal",
        "not-utf8",
    ],
)
def test_bad_bodies_get_400_with_the_reason(
    service: Service, body: bytes, reason: str
) -> None:
    response = service.post(content=body)

    assert response.status_code == 400
    assert reason in response.json()["detail"]
    [delivery] = service.deliveries()
    assert (delivery.status_code, delivery.outcome) == (400, "bad_request")
    assert reason in (delivery.reason or "")


def test_body_over_the_limit_gets_413(service: Service) -> None:
    limit = service.runtime.settings.max_body_bytes
    body = {"event": "dealCreated", "id": DEAL, "pad": "x" * limit}

    response = service.post(body)

    assert response.status_code == 413
    assert "BROKERHOOKS_MAX_BODY_BYTES" in response.json()["detail"]
    [delivery] = service.deliveries()
    assert delivery.body_size > limit
    assert delivery.body_sha256 is None


def test_body_over_the_limit_without_length_gets_413(service: Service) -> None:
    limit = service.runtime.settings.max_body_bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"event": "dealCreated", "pad": "'
        yield b"x" * limit
        yield b'"}'

    response = httpx.post(
        service.url + "/hooks/salestrekker",
        headers={
            "Authorization": f"Salestrekker {KEY}",
            "Content-Type": "application/json",
        },
        content=chunks(),
    )

    assert response.status_code == 413


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", ""]
)
def test_content_type_other_than_json_gets_415(
    service: Service, content_type: str
) -> None:
    response = service.post(deal_event(), headers={"Content-Type": content_type})

    assert response.status_code == 415


def test_json_with_charset_is_accepted(service: Service) -> None:
    response = service.post(
        deal_event(), headers={"Content-Type": "application/json;charset=utf-8"}
    )

    assert response.status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_get_405(service: Service, method: str) -> None:
    response = service.post(deal_event(), method=method)

    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    [delivery] = service.deliveries()
    assert delivery.outcome == "method_not_allowed"


def test_store_down_gets_503(settings: Settings, engine: Engine) -> None:
    for service in make_service(settings, engine):
        service.runtime.writer._engine = _unreachable_engine(settings)

        response = service.post(deal_event())

        assert response.status_code == 503
        assert response.json()["error"] == "store_unavailable"


def _unreachable_engine(settings: Settings) -> Engine:
    if settings.is_sqlite:
        url = "sqlite:////nonexistent-folder/brokerhooks.db"
    else:
        url = "postgresql://nobody@127.0.0.1:1/none"
    return make_engine(settings.model_copy(update={"database_url": url}))


def test_every_delivery_is_recorded_without_the_body(service: Service) -> None:
    accepted = service.post(deal_event())
    service.post(deal_event(), key="wrong-key")
    service.post(content=b"garbage")

    deliveries = service.deliveries()

    assert [d.status_code for d in deliveries] == [200, 401, 400]
    first = deliveries[0]
    assert first.event_id == accepted.json()["event"]
    assert first.broker_id is not None
    assert first.client_address == "127.0.0.1"
    assert first.body_size == len(json.dumps(deal_event()))
    assert deliveries[1].broker_id is None
    assert deliveries[2].body_sha256 == hashlib.sha256(b"garbage").hexdigest()


def test_concurrent_deliveries_are_all_stored(service: Service) -> None:
    """Deliveries arriving together share commits; each is stored once."""

    async def send_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=service.url) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/hooks/salestrekker",
                        json={"event": "dealUpdated", "id": str(uuid.uuid4())},
                        headers={"Authorization": f"Salestrekker {KEY}"},
                    )
                    for _ in range(200)
                )
            )

    responses = asyncio.run(send_all())

    assert {response.status_code for response in responses} == {200}
    ids = {response.json()["event"] for response in responses}
    assert len(ids) == 200
    with transaction(service.engine) as connection:
        stored = {event.id for event in list_events(connection, limit=1000)}
    assert stored == ids


def test_health_readiness_and_metrics(service: Service) -> None:
    service.post(deal_event())
    service.post(deal_event(), key="nope")

    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(service.url + "/readyz").status_code == 200
    metrics = httpx.get(service.url + "/metrics").text
    assert (
        'brokerhooks_deliveries_total{outcome="accepted",source="salestrekker"} 1.0'
        in metrics
    )
    assert (
        'brokerhooks_deliveries_total{outcome="unauthorized",source="salestrekker"} 1.0'
        in metrics
    )
    assert "brokerhooks_ingest_latency_seconds_bucket" in metrics


def test_readiness_fails_when_the_store_is_down(
    settings: Settings, engine: Engine
) -> None:
    for service in make_service(settings, engine):
        service.runtime.engine = _unreachable_engine(settings)

        response = httpx.get(service.url + "/readyz")

        assert response.status_code == 503
