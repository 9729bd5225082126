"""calendar_event against the Graph simulator: one event per deal and step."""

from __future__ import annotations

from typing import Any

import pytest

from brokerhooks.actions.base import ActionContext, ActionResult
from brokerhooks.actions.registry import get_kind
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from tests.actions.conftest import ContextFactory, prior_of
from tests.connectors.msgraph.conftest import ANN

pytestmark = pytest.mark.anyio

EVENT = get_kind("calendar_event")
PARAMS: dict[str, Any] = {
    "subject": "Settlement: Citizen",
    "start": "2025-04-11T10:00:00+10:00",
    "duration": "1h",
    "attendees": ["jane@example.com"],
    "location": "PEXA",
    "body": "<p>Settlement day.</p>",
}
MOVED = {**PARAMS, "start": "2025-04-18T10:00:00+10:00"}


def by_id(sim: MicrosoftGraphSimulator) -> dict[str, dict[str, Any]]:
    return {event["id"]: event for event in sim.events(ANN)}


async def next_run(
    make_context: ContextFactory,
    done: tuple[ActionContext, ActionResult],
    params: dict[str, Any],
) -> ActionResult:
    """The same rule and step on the deal's next event, after ``done``."""
    ctx, result = done
    prior = prior_of(ctx, result.remote_id, result.output)
    return await EVENT.perform(make_context("calendar_event", params, prior=prior))


async def first_run(
    make_context: ContextFactory, params: dict[str, Any] = PARAMS
) -> tuple[ActionContext, ActionResult]:
    ctx = make_context("calendar_event", params)
    return ctx, await EVENT.perform(ctx)


async def test_creates_the_event(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    _, result = await first_run(make_context)

    [event] = graph_sim.events(ANN)
    assert result.remote_id == event["id"]
    assert event["subject"] == "Settlement: Citizen"
    assert event["start"]["dateTime"].startswith("2025-04-11T00:00:00")
    assert event["end"]["dateTime"].startswith("2025-04-11T01:00:00")
    assert event["location"]["displayName"] == "PEXA"
    assert [a["emailAddress"]["address"] for a in event["attendees"]] == [
        "jane@example.com"
    ]
    assert result.output["done"] == "created"
    assert result.output["start"] == "2025-04-11T10:00:00+10:00"
    assert result.output["end"] == "2025-04-11T11:00:00+10:00"


async def test_the_same_key_twice_makes_one_event(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    ctx, first = await first_run(make_context)

    again = await EVENT.perform(
        make_context("calendar_event", PARAMS, event_id=ctx.event_id, unfinished=True)
    )

    assert again.remote_id == first.remote_id
    assert len(graph_sim.events(ANN)) == 1
    transaction_ids = {
        request.body["transactionId"]
        for request in graph_sim.graph_requests("POST")
        if request.path.endswith("/events")
    }
    assert len(transaction_ids) == 1


@pytest.mark.parametrize(
    ("changes", "end"),
    [
        ({"duration": None}, "2025-04-11T10:30:00+10:00"),
        ({"duration": None, "end": "2025-04-11T12:00:00+10:00"}, None),
    ],
    ids=["default-30m", "end"],
)
async def test_the_end_is_given_or_follows_from_the_start(
    make_context: ContextFactory, changes: dict[str, Any], end: str | None
) -> None:
    _, result = await first_run(make_context, {**PARAMS, **changes})

    assert result.output["end"] == (end or changes["end"])


async def test_an_end_before_the_start_is_refused(
    make_context: ContextFactory,
) -> None:
    params = {**PARAMS, "duration": None, "end": "2025-04-11T09:00:00+10:00"}

    with pytest.raises(PermanentError, match=r"end .* before it starts"):
        await first_run(make_context, params)


async def test_update_moves_the_same_event(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    done = await first_run(make_context)

    moved = await next_run(make_context, done, {**MOVED, "subject": "Moved"})

    [event] = graph_sim.events(ANN)
    assert moved.remote_id == done[1].remote_id == event["id"]
    assert moved.output["done"] == "updated"
    assert event["start"]["dateTime"].startswith("2025-04-18T00:00:00")
    assert event["end"]["dateTime"].startswith("2025-04-18T01:00:00")
    assert event["subject"] == "Moved"
    assert event["isCancelled"] is False


async def test_cancel_tells_the_attendees_and_makes_a_new_event(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    done = await first_run(make_context, {**PARAMS, "on_date_change": "cancel"})

    moved = await next_run(make_context, done, {**MOVED, "on_date_change": "cancel"})

    events = by_id(graph_sim)
    assert moved.output["done"] == "replaced"
    assert moved.remote_id != done[1].remote_id
    assert events[str(done[1].remote_id)]["isCancelled"] is True
    assert events[str(moved.remote_id)]["isCancelled"] is False
    assert events[str(moved.remote_id)]["start"]["dateTime"].startswith("2025-04-18")


async def test_cancel_deletes_an_event_nobody_was_invited_to(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    alone = {**PARAMS, "attendees": None, "on_date_change": "cancel"}
    done = await first_run(make_context, alone)

    moved = await next_run(make_context, done, {**alone, "start": MOVED["start"]})

    assert list(by_id(graph_sim)) == [moved.remote_id]
    assert moved.output["done"] == "replaced"


async def test_cancel_with_the_same_dates_updates_in_place(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    params = {**PARAMS, "on_date_change": "cancel"}
    done = await first_run(make_context, params)

    again = await next_run(make_context, done, {**params, "subject": "Renamed"})

    [event] = graph_sim.events(ANN)
    assert (again.output["done"], again.remote_id) == ("updated", event["id"])
    assert event["subject"] == "Renamed"


@pytest.mark.parametrize("on_date_change", ["update", "cancel"])
async def test_a_prior_event_deleted_in_outlook_gives_way_to_a_new_one(
    graph_sim: MicrosoftGraphSimulator,
    make_context: ContextFactory,
    on_date_change: str,
) -> None:
    params = {**PARAMS, "on_date_change": on_date_change}
    done = await first_run(make_context, params)
    graph_sim.user(ANN).events.clear()

    moved = await next_run(make_context, done, {**params, "start": MOVED["start"]})

    assert moved.output["done"] == "created"
    assert list(by_id(graph_sim)) == [moved.remote_id]
