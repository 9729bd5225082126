"""Signing in and out: cookies, CSRF tokens, expiry and the throttle."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from brokerhooks.console.sessions import (
    EMAIL_FAILURES,
    IDLE,
    CookiePolicy,
    SignInThrottle,
)
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Session, User
from brokerhooks.store.types import utcnow
from tests.console.conftest import PASSWORD, ConsoleApp, csrf_of


@pytest.mark.parametrize(
    ("public_url", "secure", "name"),
    [
        ("http://127.0.0.1:8000", False, "bh_session"),
        ("http://localhost:8000", False, "bh_session"),
        ("https://hooks.example.com", True, "__Host-bh_session"),
        ("http://hooks.example.com", True, "__Host-bh_session"),
    ],
    ids=["loopback-ip", "localhost", "https", "plain-http-elsewhere"],
)
def test_cookies_are_secure_except_on_plain_loopback(
    public_url: str, secure: bool, name: str
) -> None:
    policy = CookiePolicy.for_public_url(public_url)

    assert (policy.secure, policy.session) == (secure, name)


def test_signing_in_sets_an_http_only_lax_cookie_whose_hash_is_stored(
    console: ConsoleApp,
) -> None:
    console.add_user("ann@acme.test", console.acme)
    client = console.client()

    response = console.sign_in(client, "Ann@Acme.test ")

    assert response.status_code == 303
    assert response.headers["location"] == "/console/"
    cookie = next(
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith("bh_session=")
    )
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Secure" not in cookie  # the public URL is http on loopback
    token = client.cookies["bh_session"]
    with transaction(console.engine) as connection:
        stored = list(connection.scalars(select(Session.token_hash)))
        last = connection.scalar(select(User.last_sign_in_at))
    assert stored == [hashlib.sha256(token.encode()).hexdigest()]
    assert last is not None
    assert client.get("/console/").status_code == 200


def test_a_wrong_password_is_refused_in_plain_words(console: ConsoleApp) -> None:
    console.add_user("ann@acme.test", console.acme)
    client = console.client()

    wrong = console.sign_in(client, "ann@acme.test", "not the password")
    unknown = console.sign_in(client, "nobody@acme.test")

    assert wrong.status_code == unknown.status_code == 400
    assert "The email or the password is wrong." in wrong.text
    assert "The email or the password is wrong." in unknown.text
    assert "bh_session" not in client.cookies


def test_repeated_failures_lock_the_email_even_for_the_right_password(
    console: ConsoleApp,
) -> None:
    console.add_user("ann@acme.test", console.acme)
    client = console.client()
    for _ in range(EMAIL_FAILURES):
        console.sign_in(client, "ann@acme.test", "guess guess guess")

    locked = console.sign_in(client, "ann@acme.test", PASSWORD)

    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert "Wait 15 minute(s)" in locked.text
    assert "bh_session" not in client.cookies


def test_the_address_throttle_outlives_a_good_sign_in() -> None:
    throttle = SignInThrottle()
    for number in range(19):
        throttle.failed(f"guess{number}@acme.test", "203.0.113.9")
    asyncio.run(throttle.record_success("ann@acme.test"))
    throttle.failed("guess@acme.test", "203.0.113.9")

    assert throttle.retry_after("ann@acme.test", "203.0.113.9") > 0
    assert throttle.retry_after("ann@acme.test", "198.51.100.1") == 0


def test_the_sign_in_form_needs_its_own_cookie(console: ConsoleApp) -> None:
    console.add_user("ann@acme.test", console.acme)
    client = console.client()

    response = client.post(
        "/console/sign-in",
        data={"email": "ann@acme.test", "password": PASSWORD, "sign_in_token": "x"},
    )

    assert response.status_code == 403
    assert "Allow cookies for this site" in response.text


def test_a_post_without_the_session_csrf_token_is_refused(
    console: ConsoleApp,
) -> None:
    ann = console.add_user("ann@acme.test", console.acme)
    client = console.signed_in(ann)
    token = csrf_of(client.get("/console/"))

    missing = client.post("/console/sign-out", data={})
    forged = client.post("/console/sign-out", data={"csrf": token + "x"})
    right = client.post("/console/sign-out", data={"csrf": token})

    assert missing.status_code == forged.status_code == 403
    assert "did not come from this console" in missing.text
    assert right.status_code == 303


def test_signing_out_ends_the_session(console: ConsoleApp) -> None:
    ann = console.add_user("ann@acme.test", console.acme)
    client = console.signed_in(ann)
    token = client.cookies["bh_session"]

    client.post("/console/sign-out", data={"csrf": csrf_of(client.get("/console/"))})
    client.cookies.set("bh_session", token)

    assert client.get("/console/").status_code == 303
    with transaction(console.engine) as connection:
        assert connection.scalar(select(Session.token_hash)) is None


@pytest.mark.parametrize(
    "change",
    [
        {"last_seen_at": utcnow() - IDLE - timedelta(minutes=1)},
        {"expires_at": utcnow() - timedelta(minutes=1)},
        {"created_at": utcnow() - timedelta(days=8)},
    ],
    ids=["idle", "expired", "too-old"],
)
def test_an_ended_session_sends_the_browser_to_sign_in(
    console: ConsoleApp, change: dict[str, object]
) -> None:
    ann = console.add_user("ann@acme.test", console.acme)
    client = console.signed_in(ann)
    with transaction(console.engine, write=True) as connection:
        connection.execute(update(Session).values(**change))

    response = client.get("/console/events?type=dealCreated")

    assert response.status_code == 303
    assert response.headers["location"] == (
        "/console/sign-in?next=%2Fconsole%2Fevents%3Ftype%3DdealCreated"
    )
    with transaction(console.engine) as connection:
        assert connection.scalar(select(Session.token_hash)) is None


def test_a_disabled_user_is_signed_out(console: ConsoleApp) -> None:
    ann = console.add_user("ann@acme.test", console.acme)
    client = console.signed_in(ann)
    with transaction(console.engine, write=True) as connection:
        connection.execute(update(User).values(disabled_at=utcnow()))

    assert client.get("/console/").status_code == 303
    refused = console.sign_in(console.client(), "ann@acme.test")
    assert refused.status_code == 403
    assert "disabled" in refused.text


@pytest.mark.parametrize(
    "target",
    ["https://evil.test/", "//evil.test/console/", "/elsewhere", "/console\\x"],
    ids=["absolute", "scheme-relative", "outside", "backslash"],
)
def test_sign_in_goes_only_to_console_pages(console: ConsoleApp, target: str) -> None:
    console.add_user("ann@acme.test", console.acme)
    client = console.client()
    form = client.get("/console/sign-in", params={"next": target})
    token = form.text.split('name="sign_in_token" value="')[1].split('"')[0]

    response = client.post(
        "/console/sign-in",
        data={
            "email": "ann@acme.test",
            "password": PASSWORD,
            "sign_in_token": token,
            "next": target,
        },
    )

    assert response.headers["location"] == "/console/"


def test_pages_carry_security_headers(console: ConsoleApp) -> None:
    response = console.client().get("/console/sign-in")

    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
