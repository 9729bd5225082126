"""The SalesTrekker endpoint's answers, records, metrics and log lines."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Engine
from starlette.responses import JSONResponse

from brokerhooks.config import Settings
from brokerhooks.logs import configure_logging
from brokerhooks.store.database import transaction
from brokerhooks.store.events import get_event
from tests.ingest.test_salestrekker import DEAL, KEY, Service, make_service


@pytest.fixture
def service(settings: Settings, engine: Engine) -> Iterator[Service]:
    yield from make_service(settings, engine)


def test_the_accepted_answer_is_what_jsonresponse_renders(service: Service) -> None:
    response = service.post({"event": "dealChangesStage", "id": DEAL})

    event_id = response.json()["event"]
    expected = JSONResponse({"status": "accepted", "event": event_id})
    assert response.status_code == 200
    assert response.content == expected.body
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(expected.body))


def test_ids_in_other_spellings_are_stored_canonical(service: Service) -> None:
    response = service.post(
        {"event": "noteCreated", "id": DEAL.upper(), "idDeal": DEAL.replace("-", "")}
    )

    assert response.status_code == 200
    with transaction(service.engine) as connection:
        stored = get_event(connection, response.json()["event"])
    assert (stored.entity_id, stored.deal_id) == (DEAL, DEAL)


def test_a_body_that_is_not_utf8_gets_400_and_a_record(service: Service) -> None:
    body = json.dumps({"event": "dealCreated", "id": DEAL}).encode("utf-16")

    response = service.post(content=body)

    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]
    [delivery] = service.deliveries()
    assert (delivery.status_code, delivery.outcome) == (400, "bad_request")
    assert delivery.body_size == len(body)


def test_every_delivery_is_counted_and_logged_once(
    settings: Settings, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("json", "INFO")  # onto the captured standard error
    for service in make_service(settings, engine):
        service.post({"event": "dealChangesStage", "id": DEAL})
        service.post({"event": "dealChangesStage", "id": DEAL}, key="wrong-key")
        service.deliveries()  # the rejection's record is committed
        metrics = httpx.get(service.url + "/metrics").text

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    logged = [line for line in lines if line.get("event") == "delivery"]
    assert [(line["status"], line["outcome"]) for line in logged] == [
        (200, "accepted"),
        (401, "unauthorized"),
    ]
    assert logged[0]["broker"] == "acme"
    assert logged[0]["event_id"] is not None
    assert logged[1]["reason"] == "unknown key"
    assert all(KEY not in json.dumps(line) for line in lines)
    for outcome in ("accepted", "unauthorized"):
        assert (
            f'brokerhooks_deliveries_total{{outcome="{outcome}",'
            'source="salestrekker"} 1.0'
        ) in metrics
    assert (
        'brokerhooks_ingest_latency_seconds_count{source="salestrekker"} 2.0' in metrics
    )
