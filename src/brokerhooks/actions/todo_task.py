"""``todo_task``: a task in a Microsoft To Do list, made once per key.

The list is found by name (any case) or created. The task carries a linked
resource (``applicationName`` brokerhooks, ``externalId`` the action's key,
``webUrl`` the event's page in the console). When an earlier attempt may have
made the task, the list is searched for that externalId first, and a task
found is the result: no second one is made.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from brokerhooks.actions.base import ActionContext, ActionResult
from brokerhooks.actions.support import graph, may_have_acted, moment, read_params
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.connectors.msgraph.resources import JSON, LinkedResource, TaskFields
from brokerhooks.rules.model import TodoTaskParams

APPLICATION_NAME = "brokerhooks"


class TodoTask:
    name: ClassVar[str] = "todo_task"
    why: ClassVar[str] = (
        "the task carries the action's key as its linked resource's externalId; "
        "an attempt after one that may have made it looks the key up in the list first"
    )
    guarantee: ClassVar[str] = "exactly-once"

    async def perform(self, ctx: ActionContext) -> ActionResult:
        params = read_params(ctx, TodoTaskParams)
        async with graph(ctx) as client:
            task_list = await client.find_or_create_task_list(params.list_name)
            list_id = str(task_list["id"])

            if may_have_acted(ctx):
                found = await find_task(client, list_id, ctx.key)
                if found is not None:
                    return result(found, task_list, "found")

            task = await client.create_task(
                list_id,
                TaskFields(
                    title=params.title,
                    body=params.body,
                    due=moment(params.due, "due"),
                    reminder=moment(params.reminder, "reminder"),
                    linked_resource=LinkedResource(
                        web_url=event_url(ctx),
                        application_name=APPLICATION_NAME,
                        display_name=f"brokerhooks event {ctx.event_id}",
                        external_id=ctx.key,
                    ),
                ),
            )
        return result(task, task_list, "created")


async def find_task(client: GraphClient, list_id: str, key: str) -> JSON | None:
    """The task of ``list_id`` linked to ``key`` by brokerhooks, if any.

    Reads the whole list with its linked resources: Graph has no documented
    filter on a linked resource's externalId. This runs only when an earlier
    attempt may have acted, which is rare.
    """
    tasks = await client.list_tasks(list_id, expand_linked_resources=True)
    for task in tasks:
        if any(_is_ours(link, key) for link in task.get("linkedResources") or []):
            return task
    return None


def event_url(ctx: ActionContext) -> str:
    """Where a person finds the event the task came from."""
    base = ctx.services.settings.public_url.rstrip("/")
    return f"{base}/events/{quote(ctx.event_id, safe='')}"


def result(task: JSON, task_list: JSON, done: str) -> ActionResult:
    return ActionResult(
        remote_id=str(task["id"]),
        output={
            "done": done,
            "list": task_list.get("displayName"),
            "list_id": task_list.get("id"),
            "title": task.get("title"),
        },
    )


def _is_ours(link: Any, key: str) -> bool:
    return (
        isinstance(link, dict)
        and link.get("applicationName") == APPLICATION_NAME
        and link.get("externalId") == key
    )
