"""Microsoft To Do: task lists, tasks and their linked resources.

Defaults of a new task (``notStarted``, empty text body) are documented;
error codes other than Graph's generic ones are GUESSes.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request

from brokerhooks.simulators.msgraph.common import (
    JSON,
    Answer,
    GraphFault,
    graph_timestamp,
    new_id,
)
from brokerhooks.simulators.msgraph.fields import (
    IMPORTANCE,
    check_fields,
    collection,
    date_time_zone,
    enum_value,
    item_body,
    json_object,
    new_etag,
    no_segment,
    odata_context,
    require_method,
    string_value,
)
from brokerhooks.simulators.msgraph.state import TaskList, Tenant, User

TASK_STATUS = ("notStarted", "inProgress", "completed", "waitingOnOthers", "deferred")
# The properties modelled here; a real tenant accepts every property of the
# type, and rejects unknown ones as this does.
TASK_FIELDS = frozenset(
    {
        "title",
        "body",
        "dueDateTime",
        "startDateTime",
        "reminderDateTime",
        "completedDateTime",
        "importance",
        "status",
        "isReminderOn",
        "categories",
        "linkedResources",
    }
)


def handle_todo(
    tenant: Tenant, request: Request, user: User, segments: list[str], body: bytes
) -> Answer:
    match segments:
        case ["lists"]:
            if request.method == "GET":
                return collection(
                    request,
                    tenant,
                    odata_context(request, user, "todo/lists"),
                    [task_list.resource for task_list in user.task_lists.values()],
                )
            require_method(request, "POST")
            return _create_task_list(request, user, json_object(body))
        case ["lists", list_id]:
            require_method(request, "GET")
            return Answer(200, _task_list(user, list_id).resource)
        case ["lists", list_id, "tasks"]:
            task_list = _task_list(user, list_id)
            if request.method == "GET":
                return collection(
                    request,
                    tenant,
                    odata_context(request, user, f"todo/lists('{list_id}')/tasks"),
                    [
                        _expanded(request, task_list, task)
                        for task in task_list.tasks.values()
                    ],
                )
            require_method(request, "POST")
            return _create_task(request, user, task_list, json_object(body))
        case ["lists", list_id, "tasks", task_id]:
            return _task(request, user, list_id, task_id, body)
        case ["lists", list_id, "tasks", task_id, "linkedResources"]:
            task_list = _task_list(user, list_id)
            _task_in(task_list, task_id)
            if request.method == "GET":
                return collection(
                    request,
                    tenant,
                    odata_context(request, user, "linkedResources"),
                    task_list.linked_resources.get(task_id, []),
                )
            require_method(request, "POST")
            resource = _linked_resource(json_object(body))
            task_list.linked_resources.setdefault(task_id, []).append(resource)
            return Answer(201, resource)
    raise no_segment("/".join(segments))


def default_task_list() -> TaskList:
    """Every mailbox has the "Tasks" list from the start [doc]."""
    return TaskList(
        resource={
            "@odata.etag": new_etag(),
            "displayName": "Tasks",
            "isOwner": True,
            "isShared": False,
            "wellknownListName": "defaultList",
            "id": new_id("AAMkA"),
        }
    )


def _create_task_list(request: Request, user: User, body: JSON) -> Answer:
    check_fields(body, frozenset({"displayName"}), "todoTaskList")
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphFault(400, "invalidRequest", "displayName is required.")
    # GUESS: To Do allows two lists with the same name, as its app does.
    task_list = TaskList(
        resource={
            "@odata.etag": new_etag(),
            "displayName": name,
            "isOwner": True,
            "isShared": False,
            "wellknownListName": "none",
            "id": new_id("AAMkA"),
        }
    )
    user.task_lists[task_list.resource["id"]] = task_list
    context = odata_context(request, user, "todo/lists/$entity")
    return Answer(201, {"@odata.context": context, **task_list.resource})


def _task_list(user: User, list_id: str) -> TaskList:
    task_list = user.task_lists.get(list_id)
    if task_list is None:
        raise GraphFault(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return task_list


def _task_in(task_list: TaskList, task_id: str) -> JSON:
    task = task_list.tasks.get(task_id)
    if task is None:
        raise GraphFault(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return task


def _create_task(
    request: Request, user: User, task_list: TaskList, body: JSON
) -> Answer:
    check_fields(body, TASK_FIELDS, "todoTask")
    now = graph_timestamp()
    task: JSON = {
        "@odata.etag": new_etag(),
        "importance": "normal",
        "isReminderOn": False,
        "status": "notStarted",
        "title": "",
        "createdDateTime": now,
        "lastModifiedDateTime": now,
        "hasAttachments": False,
        "categories": [],
        "id": new_id("AAMkA"),
        "body": {"content": "", "contentType": "text"},
    }
    links = body.get("linkedResources") or []
    if not isinstance(links, list):
        raise GraphFault(400, "BadRequest", "'linkedResources' must be an array.")
    resources = [_linked_resource(link) for link in links]
    _apply_task_fields(task, body)
    task_list.tasks[task["id"]] = task
    if resources:
        task_list.linked_resources[task["id"]] = resources
    context = odata_context(
        request, user, f"todo/lists('{task_list.resource['id']}')/tasks/$entity"
    )
    return Answer(201, {"@odata.context": context, **task})


def _task(
    request: Request, user: User, list_id: str, task_id: str, body: bytes
) -> Answer:
    task_list = _task_list(user, list_id)
    task = _task_in(task_list, task_id)
    if request.method == "GET":
        return Answer(200, _expanded(request, task_list, task))
    if request.method == "DELETE":
        del task_list.tasks[task_id]
        task_list.linked_resources.pop(task_id, None)
        return Answer(204)
    require_method(request, "PATCH")
    changes = json_object(body)
    check_fields(changes, TASK_FIELDS - {"linkedResources"}, "todoTask")
    _apply_task_fields(task, changes)
    task["lastModifiedDateTime"] = graph_timestamp()
    task["@odata.etag"] = new_etag()
    return Answer(200, task)


def _expanded(request: Request, task_list: TaskList, task: JSON) -> JSON:
    """The task, with its linked resources inline if ``$expand`` asks.

    GUESS: Graph documents ``$expand`` on todoTask reads in general, not
    for ``linkedResources`` in particular; other navigation properties are
    not modelled and are refused as Graph refuses an unknown one.
    """
    wanted = request.query_params.get("$expand")
    if wanted is None:
        return task
    names = {name.strip() for name in wanted.split(",") if name.strip()}
    unknown = sorted(name for name in names if name.casefold() != "linkedresources")
    if unknown:
        raise GraphFault(
            400,
            "BadRequest",
            f"Could not find a property named '{unknown[0]}' on type "
            "'microsoft.graph.todoTask'.",
        )
    return {**task, "linkedResources": task_list.linked_resources.get(task["id"], [])}


def _apply_task_fields(task: JSON, fields: JSON) -> None:
    for name in (
        "dueDateTime",
        "startDateTime",
        "reminderDateTime",
        "completedDateTime",
    ):
        if name in fields:
            value = fields[name]
            task[name] = None if value is None else date_time_zone(value, name)
    if "title" in fields:
        task["title"] = string_value(fields["title"], "title")
    if "body" in fields:
        task["body"] = item_body(fields["body"], "body")
    if "importance" in fields:
        task["importance"] = enum_value(fields["importance"], IMPORTANCE, "importance")
    if "status" in fields:
        task["status"] = enum_value(fields["status"], TASK_STATUS, "status")
        if task["status"] == "completed" and not task.get("completedDateTime"):
            task["completedDateTime"] = {
                "dateTime": graph_timestamp().rstrip("Z"),
                "timeZone": "UTC",
            }
    if "categories" in fields:
        categories = fields["categories"]
        if not isinstance(categories, list):
            raise GraphFault(400, "BadRequest", "'categories' must be an array.")
        task["categories"] = [string_value(item, "categories") for item in categories]
    if "isReminderOn" in fields:
        if not isinstance(fields["isReminderOn"], bool):
            raise GraphFault(400, "BadRequest", "'isReminderOn' must be a boolean.")
        task["isReminderOn"] = fields["isReminderOn"]
    elif fields.get("reminderDateTime"):
        # GUESS: setting a reminder time turns the reminder on.
        task["isReminderOn"] = True


def _linked_resource(value: object) -> JSON:
    if not isinstance(value, dict):
        raise GraphFault(400, "BadRequest", "A linkedResource must be an object.")
    allowed = frozenset({"webUrl", "applicationName", "displayName", "externalId"})
    check_fields(value, allowed, "linkedResource")
    resource: JSON = {"id": str(uuid.uuid4())}
    for name in sorted(allowed):
        if name in value:
            resource[name] = string_value(value[name], name)
    return resource
