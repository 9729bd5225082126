"""Admin pages: brokers and users, and the admin's broker picker."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection
from starlette.responses import RedirectResponse, Response

from brokerhooks.console import sessions
from brokerhooks.console.passwords import hash_password, password_problem
from brokerhooks.console.web import Page, local_path
from brokerhooks.errors import Conflict, NotFound
from brokerhooks.security.secrets import Secret
from brokerhooks.store import brokers as broker_store
from brokerhooks.store import users as user_store
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.users import UserRecord

ADMIN = "admin"


async def pick_broker(page: Page) -> Response:
    """Remember the broker an admin looks at (empty: every broker)."""
    chosen = page.form.get("broker")
    known = {broker.id for broker in page.signed_in.brokers}
    response = RedirectResponse(local_path(page.form.get("next")), status_code=303)
    policy = page.console.cookies(page.request)
    if chosen in known:
        policy.set(response, policy.broker, chosen, max_age=sessions.LIFETIME)
    else:
        policy.clear(response, policy.broker)
    return response


# Brokers.


async def brokers(
    page: Page,
    *,
    values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    def load(connection: Connection) -> list[tuple[BrokerRecord, int]]:
        return [
            (broker, user_store.count_users(connection, broker_id=broker.id))
            for broker in broker_store.list_brokers(connection)
        ]

    rows = await page.read(load)
    return page.render(
        "admin_brokers.html",
        status=status,
        section="brokers",
        rows=rows,
        values=values or {"name": "", "salestrekker_url": ""},
        problems=problems or {},
        webhook_url=page.settings.public_url.rstrip("/") + "/hooks/salestrekker",
    )


async def brokers_page(page: Page) -> Response:
    return await brokers(page)


async def add_broker(page: Page) -> Response:
    values = {
        "name": page.form.get("name").strip(),
        "salestrekker_url": page.form.get("salestrekker_url").strip(),
    }
    key = Secret(page.form.get("api_key").strip())
    problems: dict[str, str] = {}
    if not values["name"] or len(values["name"]) > 100:
        problems["name"] = "A broker's name has 1 to 100 characters."
    parts = urlsplit(values["salestrekker_url"])
    if parts.scheme not in ("https", "http") or not parts.hostname:
        problems["salestrekker_url"] = (
            "Give the broker's SalesTrekker address, like "
            "https://acme.salestrekker.com."
        )
    else:
        values["salestrekker_url"] = f"{parts.scheme}://{parts.netloc}"
    if not key or any(character.isspace() for character in key.reveal()):
        problems["api_key"] = "Paste the broker's SalesTrekker API key (no spaces)."
    if problems:
        return await brokers(page, values=values, problems=problems, status=400)
    vault = page.runtime.vault

    def add(connection: Connection) -> BrokerRecord:
        return broker_store.create_broker(
            connection,
            name=values["name"],
            salestrekker_url=values["salestrekker_url"],
            api_key_encrypted=vault.encrypt(key),
            api_key_hash=vault.lookup_hash(key),
        )

    try:
        broker = await page.write(add)
    except Conflict as conflict:
        field = "api_key" if "key" in str(conflict) else "name"
        problems[field] = f"{str(conflict).capitalize()}."
        return await brokers(page, values=values, problems=problems, status=409)
    return page.redirect("/admin/brokers", "broker-added", name=broker.name)


# Users.


async def users(
    page: Page,
    *,
    values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    def load(connection: Connection) -> dict[str, Any]:
        return {
            "users": user_store.list_users(connection),
            "brokers": broker_store.list_brokers(connection),
        }

    data = await page.read(load)
    return page.render(
        "admin_users.html",
        status=status,
        section="users",
        values=values or {"email": "", "role": ""},
        problems=problems or {},
        admin_role=ADMIN,
        **data,
    )


async def users_page(page: Page) -> Response:
    return await users(page)


async def add_user(page: Page) -> Response:
    values = {
        "email": user_store.normalise_email(page.form.get("email")),
        "role": page.form.get("role"),
    }
    password = Secret(page.form.get("password"))
    problems: dict[str, str] = {}
    email = values["email"]
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        problems["email"] = "Give an email address, like ann@example.com."
    if not values["role"]:
        problems["role"] = "Choose the user's broker, or admin."
    problem = password_problem(password)
    if problem is not None:
        problems["password"] = problem[0].upper() + problem[1:] + "."
    if problems:
        return await users(page, values=values, problems=problems, status=400)
    password_hash = await asyncio.to_thread(hash_password, password)
    is_admin = values["role"] == ADMIN

    def add(connection: Connection) -> UserRecord:
        broker_id = None
        if not is_admin:
            broker_id = broker_store.get_broker_by_id(connection, values["role"]).id
        return user_store.create_user(
            connection,
            email=email,
            password_hash=password_hash,
            broker_id=broker_id,
            is_admin=is_admin,
        )

    try:
        user = await page.write(add)
    except Conflict:
        problems["email"] = "A user with this email already exists."
        return await users(page, values=values, problems=problems, status=409)
    except NotFound:
        problems["role"] = "That broker no longer exists; choose another."
        return await users(page, values=values, problems=problems, status=400)
    return page.redirect("/admin/users", "user-added", name=user.email)


async def _user(page: Page) -> UserRecord:
    user_id = page.request.path_params["user_id"]
    return await page.read(lambda connection: user_store.get_user(connection, user_id))


async def remove_form(page: Page) -> Response:
    user = await _user(page)
    return page.render(
        "admin_user_remove.html",
        section="users",
        user=user,
        is_self=user.id == page.signed_in.user.id,
    )


async def remove_user(page: Page) -> Response:
    user = await _user(page)
    if user.id == page.signed_in.user.id:
        return page.render(
            "admin_user_remove.html",
            status=400,
            section="users",
            user=user,
            is_self=True,
        )
    await page.write(lambda connection: user_store.remove_user(connection, user.id))
    return page.redirect("/admin/users", "user-removed", name=user.email)
