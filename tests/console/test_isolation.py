"""No broker sees another's data through the console.

Every console route with a path parameter is walked, from the app's own
route table, by a user of another broker: each must answer 404. A route
whose parameter this test does not know fails the test, so a new route
cannot be forgotten.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from starlette.routing import BaseRoute, Mount, Route

from brokerhooks.pipeline.rulebook import save_rule_source, split_rule_file
from brokerhooks.security.secrets import Secret
from brokerhooks.store import connections
from brokerhooks.store.database import transaction
from tests.console.conftest import ConsoleApp, csrf_of
from tests.helpers import queue_event

RULE = """\
rules:
  - id: acme-only
    trigger: dealCreated
    actions:
      - kind: write_file
        params:
          path: "deals/{{ deal.id }}.txt"
"""
# Parameters that name nothing a broker owns, and why.
SHARED = {"recipe_id": "recipes are the same for every broker"}


@dataclass(frozen=True)
class ConsoleRoute:
    path: str
    methods: frozenset[str]
    params: tuple[str, ...]


def console_routes(
    routes: Sequence[BaseRoute], prefix: str = ""
) -> Iterator[ConsoleRoute]:
    for route in routes:
        if isinstance(route, Mount):
            yield from console_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route) and (prefix + route.path).startswith("/console"):
            yield ConsoleRoute(
                prefix + route.path,
                frozenset(route.methods or ()) - {"HEAD"},
                tuple(route.param_convertors),
            )


@pytest.fixture
def acme_ids(console: ConsoleApp) -> dict[str, str]:
    """One of each thing acme owns, by the path parameter naming it."""
    vault = console.runtime.vault
    event_id = queue_event(
        console.engine, console.acme.id, "dealCreated", str(uuid.uuid4())
    )
    ann = console.add_user("ann@acme.test", console.acme)
    with transaction(console.engine, write=True) as connection:
        [source] = split_rule_file(RULE, source_name="rules")
        save_rule_source(connection, console.acme.id, source, enabled=True)
        m365 = connections.create_m365_connection(
            connection,
            broker_id=console.acme.id,
            name="office",
            kind="delegated",
            tenant_id="tenant",
            client_id="client",
            client_secret_encrypted=vault.encrypt(Secret("client-secret-value")),
            authority_url="https://login.microsoftonline.com",
            graph_url="https://graph.microsoft.com",
            mailbox=None,
        )
    return {
        "event_id": event_id,
        "rule_id": source.rule_id,
        "connection_id": m365.id,
        "user_id": ann.id,
        "recipe_id": "stage-task",
    }


def test_every_route_with_an_id_answers_404_to_another_broker(
    console: ConsoleApp, acme_ids: dict[str, str]
) -> None:
    routes = [route for route in console_routes(console.app.routes) if route.params]
    unknown = {
        param for route in routes for param in route.params if param not in acme_ids
    }
    assert not unknown, f"teach this test the parameters {unknown}"
    assert len(routes) >= 10

    olly = console.signed_in(console.add_user("olly@other.test", console.other))
    token = csrf_of(olly.get("/console/"))
    ann = console.signed_in(console.add_user("ann2@acme.test", console.acme))
    answers = {}
    for route in routes:
        path = route.path
        for param in route.params:
            path = path.replace("{" + param + "}", acme_ids[param])
        owned = not set(route.params) <= set(SHARED)
        for method in sorted(route.methods):
            if method == "GET":
                response = olly.get(path)
                if owned and "/admin/" not in path:
                    assert ann.get(path).status_code == 200, path
            else:
                response = olly.post(path, data={"csrf": token})
            if owned:
                answers[f"{method} {route.path}"] = response.status_code
    assert answers
    assert set(answers.values()) == {404}, answers


def test_lists_show_only_the_viewers_broker(
    console: ConsoleApp, acme_ids: dict[str, str]
) -> None:
    olly = console.signed_in(console.add_user("olly@other.test", console.other))
    theirs = queue_event(
        console.engine, console.other.id, "dealCreated", str(uuid.uuid4())
    )

    events = olly.get("/console/events").text
    connections_page = olly.get("/console/connections").text
    rules_page = olly.get("/console/rules").text

    assert theirs in events
    assert acme_ids["event_id"] not in events
    assert "office" not in connections_page
    assert "acme-only" not in rules_page


def test_bulk_replay_refuses_another_brokers_event(
    console: ConsoleApp, acme_ids: dict[str, str]
) -> None:
    olly = console.signed_in(console.add_user("olly@other.test", console.other))
    token = csrf_of(olly.get("/console/attention"))

    response = olly.post(
        "/console/attention/replay",
        data={"csrf": token, "event": acme_ids["event_id"], "scope": "selected"},
    )

    assert response.status_code == 404


def test_admin_pages_answer_404_to_broker_users(console: ConsoleApp) -> None:
    ann = console.signed_in(console.add_user("ann@acme.test", console.acme))
    token = csrf_of(ann.get("/console/"))

    assert ann.get("/console/admin/brokers").status_code == 404
    assert ann.get("/console/admin/users").status_code == 404
    assert ann.post("/console/broker", data={"csrf": token}).status_code == 404
