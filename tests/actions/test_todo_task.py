"""todo_task against the Graph simulator: the task, its list, and no repeats."""

from __future__ import annotations

from typing import Any

import pytest

from brokerhooks.actions.registry import get_kind
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.simulators.msgraph import MicrosoftGraphSimulator
from tests.actions.conftest import ContextFactory
from tests.connectors.msgraph.conftest import ANN

pytestmark = pytest.mark.anyio

TODO = get_kind("todo_task")
PARAMS = {
    "list": "Deals",
    "title": "Order valuation for Citizen",
    "body": "Approved today.",
    "due": "2025-04-09T00:00:00+10:00",
    "reminder": "2025-04-08T09:00:00+10:00",
}


def deals_tasks(sim: MicrosoftGraphSimulator) -> list[dict[str, Any]]:
    [deals] = [item for item in sim.task_lists(ANN) if item["displayName"] == "Deals"]
    return sim.tasks(ANN, deals["id"])


def linked_resources(
    sim: MicrosoftGraphSimulator, task_id: str
) -> list[dict[str, Any]]:
    for task_list in sim.user(ANN).task_lists.values():
        if task_id in task_list.tasks:
            return task_list.linked_resources.get(task_id, [])
    raise KeyError(task_id)


async def test_creates_the_list_and_the_task(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    ctx = make_context("todo_task", PARAMS)

    result = await TODO.perform(ctx)

    [task] = deals_tasks(graph_sim)
    assert result.remote_id == task["id"]
    assert result.output["done"] == "created"
    assert task["title"] == "Order valuation for Citizen"
    assert task["body"]["content"] == "Approved today."
    # Sydney midnight is 14:00 UTC the day before.
    assert task["dueDateTime"]["dateTime"].startswith("2025-04-08T14:00:00")
    assert task["reminderDateTime"]["dateTime"].startswith("2025-04-07T23:00:00")
    assert task["isReminderOn"] is True
    [link] = linked_resources(graph_sim, task["id"])
    assert link["applicationName"] == "brokerhooks"
    assert link["externalId"] == ctx.key
    assert link["webUrl"].endswith(f"/events/{ctx.event_id}")


async def test_an_existing_list_is_used_whatever_its_case(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    await TODO.perform(make_context("todo_task", {**PARAMS, "list": "DEALS"}))
    await TODO.perform(make_context("todo_task", PARAMS))

    names = [item["displayName"] for item in graph_sim.task_lists(ANN)]
    assert names == ["Tasks", "DEALS"]


@pytest.mark.parametrize(
    "earlier_try",
    [{"unfinished": True}, {"attempt": 2}],
    ids=["worker-died", "answer-lost"],
)
async def test_a_try_after_one_that_made_the_task_finds_it(
    graph_sim: MicrosoftGraphSimulator,
    make_context: ContextFactory,
    earlier_try: dict[str, Any],
) -> None:
    ctx = make_context("todo_task", PARAMS)
    first = await TODO.perform(ctx)

    again = await TODO.perform(
        make_context("todo_task", PARAMS, **earlier_try, event_id=ctx.event_id)
    )

    assert again.remote_id == first.remote_id
    assert again.output["done"] == "found"
    assert len(deals_tasks(graph_sim)) == 1


async def test_an_unfinished_try_that_made_nothing_makes_the_task(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    await TODO.perform(make_context("todo_task", PARAMS))  # another event's task

    result = await TODO.perform(make_context("todo_task", PARAMS, unfinished=True))

    assert result.output["done"] == "created"
    assert len(deals_tasks(graph_sim)) == 2


async def test_the_lookup_reads_every_page_of_the_list(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    graph_sim.page_size = 2
    ctx = make_context("todo_task", PARAMS)
    first = await TODO.perform(ctx)
    for _ in range(4):
        await TODO.perform(make_context("todo_task", PARAMS))

    again = await TODO.perform(
        make_context("todo_task", PARAMS, unfinished=True, event_id=ctx.event_id)
    )

    assert again.remote_id == first.remote_id
    assert len(deals_tasks(graph_sim)) == 5


async def test_a_step_without_a_known_connection_is_refused(
    graph_sim: MicrosoftGraphSimulator, make_context: ContextFactory
) -> None:
    with pytest.raises(PermanentError, match="no Microsoft 365 connection"):
        await TODO.perform(make_context("todo_task", PARAMS, connection=None))
    with pytest.raises(PermanentError, match="'elsewhere'"):
        await TODO.perform(make_context("todo_task", PARAMS, connection="elsewhere"))

    assert graph_sim.graph_requests() == []


async def test_params_that_do_not_fit_are_refused_by_name(
    make_context: ContextFactory,
) -> None:
    with pytest.raises(PermanentError, match=r"params it cannot use: title: Field"):
        await TODO.perform(make_context("todo_task", {"list": "Deals"}))
    with pytest.raises(PermanentError, match=r"params\.due: .* no time zone"):
        await TODO.perform(
            make_context("todo_task", {**PARAMS, "due": "2025-04-09T09:00:00"})
        )
