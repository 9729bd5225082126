"""What Graph's refusals become for the Microsoft 365 kinds.

Throttling the Graph client can wait out becomes a short wait; throttling
it cannot, or a service that stays down, becomes a TransientError carrying
Graph's ``Retry-After``, for the worker to try the action again later.
"""

from __future__ import annotations

from typing import Any

import pytest

from brokerhooks.actions.registry import get_kind
from brokerhooks.connectors.errors import PermanentError, TransientError
from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from tests.actions.conftest import ContextFactory, SimulatedServices
from tests.connectors.msgraph.conftest import ANN

pytestmark = pytest.mark.anyio

STEPS: list[tuple[str, dict[str, Any]]] = [
    ("todo_task", {"list": "Deals", "title": "Call the valuer"}),
    ("send_mail", {"to": ["jane@example.com"], "subject": "Hi", "body": "Hello"}),
    (
        "calendar_event",
        {"subject": "Settlement", "start": "2025-04-11T10:00:00+10:00"},
    ),
    ("onedrive_folder", {"path": "Clients/Citizen"}),
    ("onedrive_upload", {"path": "Clients/Citizen/summary.txt", "content": "hi"}),
]
KIND_IDS = [kind for kind, _ in STEPS]


@pytest.mark.parametrize(("kind", "params"), STEPS, ids=KIND_IDS)
async def test_a_429_with_retry_after_is_waited_out(
    graph_sim: MicrosoftGraphSimulator,
    services: SimulatedServices,
    make_context: ContextFactory,
    kind: str,
    params: dict[str, Any],
) -> None:
    graph_sim.inject_fault(429, retry_after=7, times=1)

    result = await get_kind(kind).perform(make_context(kind, params))

    assert services.sleeps.waits == [7.0]
    assert result.output


@pytest.mark.parametrize(("kind", "params"), STEPS, ids=KIND_IDS)
async def test_throttling_that_lasts_is_transient_with_retry_after(
    graph_sim: MicrosoftGraphSimulator,
    make_context: ContextFactory,
    kind: str,
    params: dict[str, Any],
) -> None:
    graph_sim.inject_fault(429, retry_after=120, times=None)

    with pytest.raises(TransientError, match="429 TooManyRequests") as raised:
        await get_kind(kind).perform(make_context(kind, params))

    assert raised.value.retry_after == 120


@pytest.mark.parametrize(("kind", "params"), STEPS, ids=KIND_IDS)
async def test_a_service_that_stays_down_is_transient(
    graph_sim: MicrosoftGraphSimulator,
    services: SimulatedServices,
    make_context: ContextFactory,
    kind: str,
    params: dict[str, Any],
) -> None:
    graph_sim.inject_fault(503, times=None)

    with pytest.raises(TransientError, match="503 serviceNotAvailable"):
        await get_kind(kind).perform(make_context(kind, params))

    assert services.sleeps.waits == [1.0, 2.0, 4.0]
    assert graph_sim.sent_mail == []
    assert graph_sim.events(ANN) == []


async def test_a_refusal_is_permanent_and_says_what_to_fix(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    graph_sim.inject_fault(403, code="ErrorAccessDenied", times=None)

    with pytest.raises(PermanentError, match=r"Tasks\.ReadWrite"):
        await get_kind("todo_task").perform(make_context(*STEPS[0]))
