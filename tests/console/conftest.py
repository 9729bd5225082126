"""Fixtures for the console: an app with two brokers and their users."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

import httpx
import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette

from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.console import sessions
from brokerhooks.console.passwords import hash_password
from brokerhooks.runtime import Runtime
from brokerhooks.security.secrets import Secret
from brokerhooks.store import users
from brokerhooks.store.brokers import BrokerRecord
from brokerhooks.store.database import transaction
from brokerhooks.store.users import UserRecord
from tests.helpers import add_broker
from tests.servers import serve_in_thread

PASSWORD = "correct horse battery"
ACME_KEY = "acme-key-0123456789abcdef0123"
OTHER_KEY = "other-key-fedcba9876543210fedc"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@cache
def password_hash(password: str) -> str:
    """The hash of a test password, made once (argon2 is slow on purpose)."""
    return hash_password(Secret(password))


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(page.text)
    assert found is not None, page.text
    return found.group(1)


@dataclass
class ConsoleApp:
    app: Starlette
    url: str
    engine: Engine
    runtime: Runtime
    acme: BrokerRecord
    other: BrokerRecord
    clients: list[httpx.Client] = field(default_factory=list)

    def add_user(
        self, email: str, broker: BrokerRecord | None, password: str = PASSWORD
    ) -> UserRecord:
        with transaction(self.engine, write=True) as connection:
            return users.create_user(
                connection,
                email=email,
                password_hash=password_hash(password),
                broker_id=broker.id if broker else None,
                is_admin=broker is None,
            )

    def client(self) -> httpx.Client:
        client = httpx.Client(base_url=self.url, follow_redirects=False)
        self.clients.append(client)
        return client

    def signed_in(self, user: UserRecord) -> httpx.Client:
        """A client with a session of ``user``, made in the store directly."""
        with transaction(self.engine, write=True) as connection:
            token = sessions.start_session(connection, user.id)
        client = self.client()
        client.cookies.set("bh_session", token)
        return client

    def sign_in(
        self, client: httpx.Client, email: str, password: str = PASSWORD
    ) -> httpx.Response:
        """Sign in through the form, as a browser does."""
        form = client.get("/console/sign-in")
        token = re.search(r'name="sign_in_token" value="([^"]+)"', form.text)
        assert token is not None, form.text
        return client.post(
            "/console/sign-in",
            data={
                "email": email,
                "password": password,
                "sign_in_token": token.group(1),
                "next": "/console/",
            },
        )


@pytest.fixture
def console(settings: Settings, engine: Engine) -> Iterator[ConsoleApp]:
    runtime = Runtime.build(settings, engine)
    acme = add_broker(engine, runtime.vault, "acme", api_key=ACME_KEY)
    other = add_broker(engine, runtime.vault, "other", api_key=OTHER_KEY)
    app = create_app(settings, runtime)
    with serve_in_thread(app) as url:
        found = ConsoleApp(app, url, engine, runtime, acme, other)
        yield found
        for client in found.clients:
            client.close()
