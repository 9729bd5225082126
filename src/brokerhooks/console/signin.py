"""Signing in and out of the console."""

from __future__ import annotations

import asyncio
import math

import structlog
from starlette.responses import RedirectResponse, Response

from brokerhooks.console import passwords, sessions
from brokerhooks.console.web import PREFIX, Page, local_path
from brokerhooks.security.secrets import Secret
from brokerhooks.store import users as user_store
from brokerhooks.store.database import transaction
from brokerhooks.store.types import utcnow
from brokerhooks.store.users import UserRecord

log = structlog.get_logger("brokerhooks.console")

WRONG = "The email or the password is wrong."


async def sign_in_form(page: Page) -> Response:
    if await page.console.viewer(page.request) is not None:
        return RedirectResponse(
            local_path(page.request.query_params.get("next")), status_code=303
        )
    return _form(page, next_path=page.request.query_params.get("next"))


def _form(
    page: Page,
    *,
    next_path: str | None,
    email: str = "",
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The sign-in form, with a fresh double-submit token in its cookie."""
    token = sessions.new_token()
    response = page.render(
        "sign_in.html",
        status=status,
        sign_in_token=token,
        next_path=local_path(next_path),
        email=email,
        error=error,
    )
    policy = page.console.cookies(page.request)
    policy.set(response, policy.sign_in, token, max_age=sessions.IDLE)
    return response


async def sign_in(page: Page) -> Response:
    """Check the password; on success start a session and go to ``next``."""
    form = page.form
    email = user_store.normalise_email(form.get("email"))[:320]
    password = Secret(form.get("password"))
    next_path = form.get("next")
    policy = page.console.cookies(page.request)
    expected = page.request.cookies.get(policy.sign_in)
    if expected is None or not sessions.same_token(form.get("sign_in_token"), expected):
        return _form(
            page,
            next_path=next_path,
            email=email,
            status=403,
            error="The sign-in form had expired, or this browser refuses cookies. "
            "Allow cookies for this site and sign in again.",
        )
    if not email or not password:
        return _form(
            page,
            next_path=next_path,
            email=email,
            status=400,
            error="Give your email and your password.",
        )

    address = sessions.client_address(page.request)
    throttle = page.console.throttle(page.runtime)
    wait = throttle.retry_after(email, address)
    if wait > 0:
        minutes = max(1, math.ceil(wait / 60))
        return _form(
            page,
            next_path=next_path,
            email=email,
            status=429,
            error=f"Too many failed sign-ins for this email or from this network. "
            f"Wait {minutes} minute(s) and try again, or ask an admin to set a new "
            "password.",
        )

    user = await asyncio.to_thread(_check_password, page, email, password)
    if user is None:
        throttle.failed(email, address)
        log.info("console_sign_in_failed", client=address)
        return _form(page, next_path=next_path, email=email, status=400, error=WRONG)
    await throttle.record_success(email)
    if user.disabled_at is not None:
        return _form(
            page,
            next_path=next_path,
            email=email,
            status=403,
            error="This user is disabled. Ask an admin to enable it.",
        )

    token = await asyncio.to_thread(_start_session, page, user)
    log.info("console_signed_in", user=user.id, client=address)
    response = RedirectResponse(local_path(next_path), status_code=303)
    policy.set(response, policy.session, token, max_age=sessions.LIFETIME)
    policy.clear(response, policy.sign_in)
    return response


def _check_password(page: Page, email: str, password: Secret) -> UserRecord | None:
    """The user if the password is theirs; as slow for an unknown email."""
    with transaction(page.runtime.engine) as connection:
        found = user_store.find_credentials(connection, email)
    if found is None:
        passwords.waste_time(password)
        return None
    if not passwords.verify_password(found.password_hash, password):
        return None
    if passwords.needs_rehash(found.password_hash):
        with transaction(page.runtime.engine, write=True) as connection:
            user_store.rehash_password(
                connection, found.user.id, passwords.hash_password(password)
            )
    return found.user


def _start_session(page: Page, user: UserRecord) -> str:
    now = utcnow()
    with transaction(page.runtime.engine, write=True) as connection:
        user_store.delete_stale_sessions(
            connection, now=now, idle_since=now - sessions.IDLE
        )
        token = sessions.start_session(connection, user.id)
        user_store.record_sign_in(connection, user.id)
    return token


async def sign_out(page: Page) -> Response:
    policy = page.console.cookies(page.request)
    token = page.request.cookies.get(policy.session)
    if token:
        await page.write(
            lambda connection: user_store.delete_session(
                connection, sessions.token_hash(token)
            )
        )
    response = RedirectResponse(f"{PREFIX}/sign-in?notice=signed-out", status_code=303)
    policy.clear(response, policy.session)
    policy.clear(response, policy.broker)
    return response
