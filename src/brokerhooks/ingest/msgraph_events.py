"""Microsoft Graph as an event source: what brokerhooks subscribes to, and
the event types its change notifications become.

A subscription watches one resource kind of one Microsoft 365 connection:

=========  ===============================================  ==============
kind       resource (``{user}`` is ``/me`` or ``/users/x``)  event subject
=========  ===============================================  ==============
inbox      ``{user}/mailFolders('inbox')/messages``          message
calendar   ``{user}/events``                                 calendar_event
todo       ``{user}/todo/lists/{list id}/tasks``             task
drive      ``{user}/drive/root``                             drive_item
=========  ===============================================  ==============

A notification's ``changeType`` (created, updated, deleted) and the kind
give the event type, e.g. ``messageCreated``. Two types are found only
when the event is processed: ``taskCompleted`` (a ``taskUpdated`` whose
task became completed) and, for OneDrive, whose notifications say only that
something under the root changed, ``driveItemChanged``/``driveItemDeleted``
per item found by a delta query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

SOURCE = "msgraph"

GraphSubject = Literal["message", "calendar_event", "task", "drive_item"]
GRAPH_SUBJECTS: tuple[GraphSubject, ...] = (
    "message",
    "calendar_event",
    "task",
    "drive_item",
)


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """One kind of resource a connection can be subscribed to."""

    name: str
    subject: GraphSubject
    prefix: str
    """The start of its event types: ``message`` gives ``messageCreated``."""
    max_lifetime: timedelta
    """The longest a subscription may live before it must be renewed [doc]."""
    change_types: tuple[str, ...]
    """What brokerhooks subscribes to by default."""
    allowed_change_types: tuple[str, ...]
    lifecycle_events: tuple[str, ...]
    """The lifecycle notifications Graph sends for it [doc]."""
    per_item_notifications: bool
    """False: a notification says only that something changed (OneDrive)."""


# Maximum lifetimes: 4,230 minutes for Outlook and To Do, 42,300 for
# OneDrive (msgraph.md 1.1).
_THREE_DAYS = timedelta(minutes=4230)
_THIRTY_DAYS = timedelta(minutes=42300)
_OUTLOOK_LIFECYCLE = ("reauthorizationRequired", "subscriptionRemoved", "missed")

RESOURCE_KINDS: dict[str, ResourceKind] = {
    kind.name: kind
    for kind in (
        ResourceKind(
            name="inbox",
            subject="message",
            prefix="message",
            max_lifetime=_THREE_DAYS,
            # Reading, flagging or moving a mail is an update; mail that
            # arrives is what rules are about.
            change_types=("created",),
            allowed_change_types=("created", "updated", "deleted"),
            lifecycle_events=_OUTLOOK_LIFECYCLE,
            per_item_notifications=True,
        ),
        ResourceKind(
            name="calendar",
            subject="calendar_event",
            prefix="event",
            max_lifetime=_THREE_DAYS,
            change_types=("created", "updated", "deleted"),
            allowed_change_types=("created", "updated", "deleted"),
            lifecycle_events=_OUTLOOK_LIFECYCLE,
            per_item_notifications=True,
        ),
        ResourceKind(
            name="todo",
            subject="task",
            prefix="task",
            max_lifetime=_THREE_DAYS,
            change_types=("created", "updated", "deleted"),
            allowed_change_types=("created", "updated", "deleted"),
            lifecycle_events=("reauthorizationRequired",),
            per_item_notifications=True,
        ),
        ResourceKind(
            name="drive",
            subject="drive_item",
            prefix="driveItem",
            max_lifetime=_THIRTY_DAYS,
            # A drive root takes only `updated` [doc].
            change_types=("updated",),
            allowed_change_types=("updated",),
            lifecycle_events=("reauthorizationRequired",),
            per_item_notifications=False,
        ),
    )
}

CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")

TASK_COMPLETED = "taskCompleted"
TASK_UPDATED = "taskUpdated"
DRIVE_ITEM_CHANGED = "driveItemChanged"
DRIVE_ITEM_DELETED = "driveItemDeleted"

# Every Graph event type a rule can name, with the subject it is about.
EVENT_SUBJECTS: dict[str, GraphSubject] = {
    "messageCreated": "message",
    "messageUpdated": "message",
    "messageDeleted": "message",
    "eventCreated": "calendar_event",
    "eventUpdated": "calendar_event",
    "eventDeleted": "calendar_event",
    "taskCreated": "task",
    TASK_UPDATED: "task",
    TASK_COMPLETED: "task",
    "taskDeleted": "task",
    DRIVE_ITEM_CHANGED: "drive_item",
    DRIVE_ITEM_DELETED: "drive_item",
}
DELETED_TYPES = frozenset(name for name in EVENT_SUBJECTS if name.endswith("Deleted"))

_BY_LOWER = {name.lower(): name for name in EVENT_SUBJECTS}


def canonical_graph_event_name(name: str) -> str | None:
    """The canonical spelling of a Graph event type (any case), or None."""
    return _BY_LOWER.get(name.strip().lower())


def graph_subject_of(event_type: str) -> GraphSubject | None:
    return EVENT_SUBJECTS.get(event_type)


def event_type_for(kind: ResourceKind, change_type: str) -> str:
    """The event type of a notification: ``inbox`` + ``created`` is messageCreated.

    OneDrive changes are ``driveItemChanged`` unless the item was deleted.
    """
    if kind.name == "drive":
        return DRIVE_ITEM_DELETED if change_type == "deleted" else DRIVE_ITEM_CHANGED
    return f"{kind.prefix}{change_type[:1].upper()}{change_type[1:]}"
