"""The OpenAPI description against the API itself, with schemathesis.

For every operation, requests are generated from the description (valid
ones, then invalid ones) and sent in-process to the whole app over a
seeded store with a valid token. Every answer must be documented and match
its schema, and none may be a 5xx. Examples are few, the same on every
run, and the store is seeded once per mode, so the suite stays fast and
steady; nothing leaves the process. ``BROKERHOOKS_TEST_API_EXAMPLES=200``
searches harder.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from brokerhooks.api.app import ROUTERS
from brokerhooks.app import create_app
from brokerhooks.config import Settings
from brokerhooks.runtime import Runtime
from tests.api.conftest import World

# Deletions last, so that the other operations find what they address.
OPERATIONS = sorted(
    (
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    ),
    key=lambda operation: (operation[0] == "DELETE", operation),
)
# Few examples keep the suite fast; set more to search harder.
EXAMPLES = int(os.environ.get("BROKERHOOKS_TEST_API_EXAMPLES", "12"))


@pytest.fixture
def api_schema(settings: Settings, runtime: Runtime, world: World) -> Any:
    """The description as served, with acme's token put on every request.

    Given to schemathesis as an auth provider, the token is left off the
    invalid requests that test a missing or wrong one.
    """
    app = create_app(settings, runtime)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    token = world.acme.token

    @schema.auth()
    class AcmeToken:
        def get(self, case: Any, context: Any) -> str:
            return token

        def set(self, case: Any, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    return schema


def test_every_route_is_described(api_schema: Any) -> None:
    described = sorted(
        (operation.method.upper(), operation.path)
        for operation in (result.ok() for result in api_schema.get_all_operations())
    )
    assert described == sorted(OPERATIONS)


@pytest.mark.parametrize(
    "mode",
    [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    ids=["valid-requests", "invalid-requests"],
)
def test_the_api_keeps_to_its_description(
    api_schema: Any, world: World, mode: GenerationMode
) -> None:
    # Ids of acme's records, so that valid requests reach them too, not
    # only the 404 of a made-up id.
    known = {
        "event_id": world.acme.processed[-1],
        "rule_id": "stage-file",
        "run_id": world.acme.runs[-1],
    }
    failures = {}
    statuses = {}
    for method, path in OPERATIONS:
        label = f"{method} {path}"
        operation = api_schema[path][method]
        try:
            statuses[label] = _fuzz(api_schema, operation, mode)
            if mode == GenerationMode.POSITIVE and "{" in path:
                ids = {p.name: known[p.name] for p in operation.path_parameters}
                statuses[label] |= _fuzz(api_schema, operation, mode, ids)
        except Exception as failure:  # each operation is reported
            failures[label] = failure

    assert not failures, "\n\n".join(f"{op}: {error}" for op, error in failures.items())
    if mode == GenerationMode.POSITIVE:
        # The token reached every valid request, and each request without a
        # rule file succeeded at least once.
        assert all(401 not in seen for seen in statuses.values()), statuses
        assert all(
            min(statuses[f"{method} {path}"]) < 300
            for method, path in OPERATIONS
            if not api_schema[path][method].body
        ), statuses


def _fuzz(
    schema: Any,
    operation: Any,
    mode: GenerationMode,
    path_parameters: dict[str, Any] | None = None,
) -> set[int]:
    """Send generated requests to ``operation``; the statuses it answered."""
    # A rule file is text: most texts are not rule files (422 is the answer
    # to them), and what schemathesis makes as "not a string" is text again
    # once sent (`null` is a YAML file holding no rules).
    excluded = (
        [positive_data_acceptance, negative_data_rejection] if operation.body else []
    )
    statuses = set()
    cases = operation.as_strategy(
        generation_mode=mode, auth_storage=schema.auth, path_parameters=path_parameters
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: Any) -> None:
        response = case.call_and_validate(excluded_checks=excluded)
        statuses.add(response.status_code)

    check()
    return statuses
