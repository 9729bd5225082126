"""http_request to a receiver on loopback: signing, refusals, answers.

The receiver is a small Starlette app served by uvicorn in a thread. The
kind refuses loopback addresses unless ``http_allow_private`` is on, so the
tests turn it on, except those that check the refusal.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from brokerhooks.actions.http_request import shown_secret, signing_secret
from brokerhooks.actions.outbound import check_destination, check_peer
from brokerhooks.actions.registry import get_kind
from brokerhooks.connectors.errors import PermanentError, TransientError
from tests.actions.conftest import (
    BROKER_ID,
    ContextFactory,
    SimulatedServices,
    action_settings,
)
from tests.servers import free_port, serve_in_thread

pytestmark = pytest.mark.anyio

HTTP = get_kind("http_request")
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


RECEIVED: list[Received] = []


async def record(request: Request) -> Response:
    RECEIVED.append(
        Received(
            request.method,
            request.url.path,
            dict(request.headers),
            await request.body(),
        )
    )
    return Response(status_code=204)


async def answer(request: Request) -> Response:
    code = int(request.path_params["code"])
    return Response(
        "nope:   field 'amount'\nis invalid",
        status_code=code,
        headers={"Retry-After": "30"},
    )


async def redirect(request: Request) -> Response:
    return RedirectResponse("/hook", status_code=302)


async def slow(request: Request) -> Response:
    await asyncio.sleep(1.0)
    return Response(status_code=204)


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app = Starlette(
        routes=[
            Route("/hook", record, methods=methods),
            Route("/status/{code}", answer, methods=methods),
            Route("/redirect", redirect, methods=methods),
            Route("/slow", slow, methods=methods),
        ]
    )
    with serve_in_thread(app) as base:
        yield base


@pytest.fixture(autouse=True)
def fresh_receiver() -> None:
    RECEIVED.clear()


@pytest.fixture
def settings_values(files_folder: Path) -> dict[str, Any]:
    return {
        "http_allow_private": True,
        "http_signing_secret": SecretStr(SECRET),
        "action_timeout_seconds": 0.5,
    }


def verify(secret: str, received: Received) -> bool:
    """Check a Standard Webhooks signature as a receiver's code would."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    webhook_id = received.headers["webhook-id"]
    timestamp = received.headers["webhook-timestamp"]
    signed = f"{webhook_id}.{timestamp}.".encode() + received.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    return any(
        hmac.compare_digest(signature.removeprefix("v1,").encode(), expected)
        for signature in received.headers["webhook-signature"].split()
    )


async def test_posts_a_signed_json_body(
    make_context: ContextFactory, receiver: str
) -> None:
    body = {"deal": "Citizen - Purchase", "amount": "650000", "labels": ["VIP"]}
    ctx = make_context(
        "http_request",
        {"url": receiver + "/hook", "headers": {"X-Broker": "acme"}, "body": body},
    )

    result = await HTTP.perform(ctx)

    [got] = RECEIVED
    assert (got.method, got.path) == ("POST", "/hook")
    assert json.loads(got.body) == body
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-broker"] == "acme"
    assert got.headers["webhook-id"] == ctx.key
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert got.headers["webhook-signature"].startswith("v1,")
    assert verify(SECRET, got)
    assert result.output == {
        "status": 204,
        "method": "POST",
        "destination": receiver,
        "webhook_id": ctx.key,
    }


async def test_a_retry_carries_the_same_webhook_id(
    make_context: ContextFactory, receiver: str
) -> None:
    params = {"url": receiver + "/hook", "method": "PUT", "body": "settled"}
    ctx = make_context("http_request", params)

    await HTTP.perform(ctx)
    await HTTP.perform(make_context("http_request", params, event_id=ctx.event_id))

    first, second = RECEIVED
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == ctx.key
    assert first.headers["content-type"] == "text/plain; charset=utf-8"
    assert verify(SECRET, first)
    assert verify(SECRET, second)


async def test_without_a_setting_each_broker_has_a_derived_secret(
    services: SimulatedServices, make_context: ContextFactory, receiver: str
) -> None:
    settings = action_settings(http_allow_private=True)
    derived = dataclasses.replace(services, settings=settings)

    await HTTP.perform(
        make_context("http_request", {"url": receiver + "/hook"}, services=derived)
    )

    [got] = RECEIVED
    shown = shown_secret(signing_secret(settings, BROKER_ID))
    assert verify(shown, got)
    assert got.body == b""
    assert "content-type" not in got.headers
    # Stable for the broker, different for another, not the encryption key.
    assert signing_secret(settings, BROKER_ID) == signing_secret(settings, BROKER_ID)
    assert signing_secret(settings, BROKER_ID) != signing_secret(settings, "other")
    assert signing_secret(settings, BROKER_ID) not in settings.fernet_keys


async def test_loopback_is_refused_unless_allowed(
    services: SimulatedServices, make_context: ContextFactory, receiver: str
) -> None:
    strict = dataclasses.replace(services, settings=action_settings())

    with pytest.raises(PermanentError, match="BROKERHOOKS_HTTP_ALLOW_PRIVATE"):
        await HTTP.perform(
            make_context("http_request", {"url": receiver + "/hook"}, services=strict)
        )

    assert RECEIVED == []


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.9/hook",
        "http://192.168.1.20/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://0.0.0.0:8000/hook",
        "http://224.0.0.1/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ],
)
async def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(
        PermanentError, match="private, loopback, link-local or otherwise non-public"
    ):
        await check_destination(url, action_settings())


async def test_a_public_address_passes() -> None:
    await check_destination("https://93.184.215.14/hook", action_settings())


async def test_an_answer_from_a_non_public_peer_is_not_read(
    services: SimulatedServices, receiver: str
) -> None:
    """The second check looks at the address connected to, whatever DNS said."""
    url = receiver + "/hook"
    async with services.http.stream("GET", url) as response:
        with pytest.raises(PermanentError, match=r"was reached at 127\.0\.0\.1"):
            check_peer(url, response, action_settings())

        check_peer(url, response, action_settings(http_allow_private=True))


@pytest.mark.parametrize(
    ("code", "error", "retry_after"),
    [
        (500, TransientError, 30.0),
        (503, TransientError, 30.0),
        (429, TransientError, 30.0),
        (400, PermanentError, None),
        (404, PermanentError, None),
    ],
)
async def test_what_an_answer_means(
    make_context: ContextFactory,
    receiver: str,
    code: int,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    url = f"{receiver}/status/{code}?token=s3cr3t-in-the-url"

    with pytest.raises(error) as raised:
        await HTTP.perform(make_context("http_request", {"url": url}))

    message = str(raised.value)
    assert message == (
        f"POST to {receiver} answered {code}: nope: field 'amount' is invalid"
    )
    assert "s3cr3t" not in message
    assert getattr(raised.value, "retry_after", None) == retry_after


async def test_redirects_are_not_followed(
    make_context: ContextFactory, receiver: str
) -> None:
    with pytest.raises(PermanentError, match="302, a redirect"):
        await HTTP.perform(
            make_context("http_request", {"url": receiver + "/redirect"})
        )

    assert RECEIVED == []


async def test_a_receiver_that_does_not_answer_in_time_is_transient(
    make_context: ContextFactory, receiver: str
) -> None:
    with pytest.raises(TransientError, match="no answer in time"):
        await HTTP.perform(make_context("http_request", {"url": receiver + "/slow"}))


async def test_a_receiver_that_is_not_there_is_transient(
    make_context: ContextFactory,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"

    with pytest.raises(TransientError, match="ConnectError"):
        await HTTP.perform(make_context("http_request", {"url": url}))


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"Webhook-Signature": "v1,forged"}, "set by brokerhooks"),
        ({"X-Note": "one\r\nX-Injected: yes"}, "line break"),
        ({"Bad Name": "x"}, "not a header name"),
    ],
    ids=["signature", "line-break", "name"],
)
async def test_headers_that_cannot_be_sent_are_refused(
    make_context: ContextFactory,
    receiver: str,
    headers: dict[str, str],
    message: str,
) -> None:
    params = {"url": receiver + "/hook", "headers": headers}

    with pytest.raises(PermanentError, match=message):
        await HTTP.perform(make_context("http_request", params))

    assert RECEIVED == []
