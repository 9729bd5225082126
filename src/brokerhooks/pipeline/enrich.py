"""Enrichment: fetch what an event is about, from SalesTrekker or Graph.

A deal event fetches the deal and its primary client; a note event fetches
the note and its deal; a contact event fetches the contact. The event's own
subject is the snapshot compared with the previous one; the others are kept
as snapshots too, so that later events see the latest known state.

A Microsoft Graph event fetches its message, calendar event, To Do task or
OneDrive item through the broker's connection (``fetch_graph``); which deal
and contact it is about is found from the store (``pipeline.graph_source``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from brokerhooks.connectors.msgraph.resources import JSON, KEY_HEADER
from brokerhooks.ingest.msgraph_events import graph_subject_of
from brokerhooks.ingest.salestrekker_events import subject_of
from brokerhooks.store.processing import EventToProcess


class SalesTrekkerReader(Protocol):
    async def fetch_deal(self, deal_id: str) -> dict[str, Any]: ...

    async def fetch_contact(self, contact_id: str) -> dict[str, Any]: ...

    async def fetch_note(self, note_id: str) -> dict[str, Any]: ...


# Gives the SalesTrekker reader of a broker, by broker id.
ReaderFactory = Callable[[str], SalesTrekkerReader]


@dataclass(slots=True)
class Fetched:
    """The snapshots fetched for one event, its subject's first."""

    subject: str
    entity_id: str
    data: dict[str, Any]
    related: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def all(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(subject, entity id, data) of every snapshot."""
        return [
            (self.subject, self.entity_id, self.data),
            *(
                (subject, entity, data)
                for subject, (entity, data) in self.related.items()
            ),
        ]


def from_snapshots(
    event: EventToProcess, snapshots: dict[str, dict[str, Any]]
) -> Fetched:
    """The ``Fetched`` of an event processed before, from its stored snapshots."""
    subject = subject_of(event.type) or graph_subject_of(event.type) or "deal"
    fetched = Fetched(subject, event.entity_id, snapshots.get(subject, {}))
    for other, data in snapshots.items():
        if other != subject:
            fetched.related[other] = (str(data.get("id", "")), data)
    return fetched


async def fetch(reader: SalesTrekkerReader, event: EventToProcess) -> Fetched:
    """Fetch the snapshots of ``event``; connector errors pass through."""
    subject = subject_of(event.type)
    if subject == "deal":
        deal = await reader.fetch_deal(event.entity_id)
        fetched = Fetched("deal", event.entity_id, deal)
        clients = deal.get("idClients") or []
        if clients:
            fetched.related["contact"] = (
                clients[0],
                await reader.fetch_contact(clients[0]),
            )
        return fetched
    if subject == "note":
        note = await reader.fetch_note(event.entity_id)
        fetched = Fetched("note", event.entity_id, note)
        deal_id = event.deal_id or note.get("idTicket")
        if deal_id:
            fetched.related["deal"] = (deal_id, await reader.fetch_deal(deal_id))
        return fetched
    if subject == "contact":
        return Fetched(
            "contact", event.entity_id, await reader.fetch_contact(event.entity_id)
        )
    raise ValueError(f"event type {event.type!r} has nothing to fetch")


# Microsoft Graph.
#
# A Graph event's subject (message, calendar_event, task, drive_item) is
# fetched through the broker's Microsoft 365 connection and kept in the
# shape the rules' field table describes (``rules.fields``): Graph's names,
# with addresses flattened to ``{name, address}``.

MESSAGE_SELECT = (
    "id,subject,bodyPreview,from,toRecipients,ccRecipients,receivedDateTime,"
    "sentDateTime,hasAttachments,importance,isRead,conversationId,webLink,categories,"
    "internetMessageHeaders"
)


class GraphReader(Protocol):
    """What enrichment needs of a Graph client (``GraphClient`` is one)."""

    async def get_message(
        self, message_id: str, *, select: str | None = None
    ) -> JSON: ...

    async def get_event(self, event_id: str) -> JSON: ...

    async def get_task(
        self, list_id: str, task_id: str, *, expand_linked_resources: bool = False
    ) -> JSON: ...

    async def get_drive_item(self, item_id: str) -> JSON: ...


async def fetch_graph(
    reader: GraphReader, subject: str, item_id: str, *, list_id: str | None = None
) -> dict[str, Any]:
    """The item an event is about, projected; connector errors pass through."""
    if subject == "message":
        return project_message(await reader.get_message(item_id, select=MESSAGE_SELECT))
    if subject == "calendar_event":
        return project_calendar_event(await reader.get_event(item_id))
    if subject == "task":
        if list_id is None:
            raise ValueError("a task is fetched from its list")
        task = await reader.get_task(list_id, item_id, expand_linked_resources=True)
        return project_task(task, list_id)
    if subject == "drive_item":
        return project_drive_item(await reader.get_drive_item(item_id))
    raise ValueError(f"{subject!r} is not a Microsoft Graph subject")


def _address(value: Any) -> dict[str, Any]:
    email = value.get("emailAddress") if isinstance(value, dict) else None
    email = email if isinstance(email, dict) else {}
    return {"name": email.get("name"), "address": email.get("address")}


def _addresses(values: Any) -> list[dict[str, Any]]:
    return [_address(value) for value in values or [] if isinstance(value, dict)]


def _date_time(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or not value.get("dateTime"):
        return None
    return {"dateTime": value.get("dateTime"), "timeZone": value.get("timeZone")}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _preview(body: Any) -> str:
    content = body.get("content") if isinstance(body, dict) else None
    return " ".join(_text(content).split())[:255]


def project_message(message: JSON) -> dict[str, Any]:
    sender = message.get("from") or message.get("sender")
    return {
        "id": message.get("id"),
        "subject": _text(message.get("subject")),
        "bodyPreview": _text(message.get("bodyPreview")),
        "from": _address(sender),
        "to": _addresses(message.get("toRecipients")),
        "cc": _addresses(message.get("ccRecipients")),
        "receivedDateTime": message.get("receivedDateTime"),
        "sentDateTime": message.get("sentDateTime"),
        "hasAttachments": bool(message.get("hasAttachments")),
        "importance": message.get("importance") or "normal",
        "isRead": bool(message.get("isRead")),
        "conversationId": message.get("conversationId"),
        "webLink": message.get("webLink"),
        "categories": list(message.get("categories") or []),
        "brokerhooksKey": _header(message, KEY_HEADER),
    }


def _header(message: JSON, name: str) -> str | None:
    """The value of one of the message's internet headers, if it has it."""
    for header in message.get("internetMessageHeaders") or []:
        if (
            isinstance(header, dict)
            and str(header.get("name", "")).lower() == name
            and header.get("value")
        ):
            return str(header["value"])
    return None


def project_calendar_event(event: JSON) -> dict[str, Any]:
    location = event.get("location")
    return {
        "id": event.get("id"),
        "subject": _text(event.get("subject")),
        "bodyPreview": _text(event.get("bodyPreview")) or _preview(event.get("body")),
        "start": _date_time(event.get("start")),
        "end": _date_time(event.get("end")),
        "location": _text(location.get("displayName"))
        if isinstance(location, dict)
        else "",
        "organizer": _address(event.get("organizer")),
        "attendees": [
            {
                **_address(attendee),
                "type": attendee.get("type"),
                "response": (attendee.get("status") or {}).get("response"),
            }
            for attendee in event.get("attendees") or []
            if isinstance(attendee, dict)
        ],
        "isAllDay": bool(event.get("isAllDay")),
        "isCancelled": bool(event.get("isCancelled")),
        "webLink": event.get("webLink"),
        "categories": list(event.get("categories") or []),
        "changeKey": event.get("changeKey"),
    }


def project_task(task: JSON, list_id: str) -> dict[str, Any]:
    body = task.get("body")
    return {
        "id": task.get("id"),
        "listId": list_id,
        "title": _text(task.get("title")),
        "body": _text(body.get("content")) if isinstance(body, dict) else "",
        "status": task.get("status") or "notStarted",
        "importance": task.get("importance") or "normal",
        "dueDateTime": _date_time(task.get("dueDateTime")),
        "completedDateTime": _date_time(task.get("completedDateTime")),
        "createdDateTime": task.get("createdDateTime"),
        "lastModifiedDateTime": task.get("lastModifiedDateTime"),
        "categories": list(task.get("categories") or []),
        "linkedResources": [
            {
                name: link.get(name)
                for name in ("applicationName", "externalId", "webUrl", "displayName")
            }
            for link in task.get("linkedResources") or []
            if isinstance(link, dict)
        ],
    }


def project_drive_item(item: JSON) -> dict[str, Any]:
    parent = item.get("parentReference")
    folder = parent.get("path") if isinstance(parent, dict) else None
    folder = _text(folder).split("root:", 1)[-1].strip("/") if folder else ""
    name = _text(item.get("name"))
    file = item.get("file")
    return {
        "id": item.get("id"),
        "name": name,
        "path": f"{folder}/{name}" if folder else name,
        "webUrl": item.get("webUrl"),
        "size": item.get("size") if isinstance(item.get("size"), int) else 0,
        "isFolder": "folder" in item,
        "mimeType": file.get("mimeType") if isinstance(file, dict) else None,
        "createdDateTime": item.get("createdDateTime"),
        "lastModifiedDateTime": item.get("lastModifiedDateTime"),
        "deleted": "deleted" in item,
    }


def gone(subject: str, item_id: str, last: dict[str, Any] | None) -> dict[str, Any]:
    """What a deleted item's event carries: its last known state, if any."""
    if last is not None:
        return {**last, "deleted": True} if subject == "drive_item" else dict(last)
    empty: JSON = {"id": item_id}
    projected = {
        "message": project_message,
        "calendar_event": project_calendar_event,
        "drive_item": project_drive_item,
    }
    if subject == "task":
        return project_task(empty, "")
    data = projected[subject](empty)
    if subject == "drive_item":
        data["deleted"] = True
    return data


def _at(*keys: str) -> Callable[[dict[str, Any]], Any]:
    def extract(snapshot: dict[str, Any]) -> Any:
        value: Any = snapshot
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return extract


# The changes of Graph subjects: a name, and where its value is.
GRAPH_CHANGE_FIELDS: dict[str, dict[str, Callable[[dict[str, Any]], Any]]] = {
    "message": {
        "read": _at("isRead"),
        "importance": _at("importance"),
        "categories": _at("categories"),
        "subject": _at("subject"),
    },
    "calendar_event": {
        "start": _at("start", "dateTime"),
        "end": _at("end", "dateTime"),
        "subject": _at("subject"),
        "location": _at("location"),
        "cancelled": _at("isCancelled"),
    },
    "task": {
        "status": _at("status"),
        "title": _at("title"),
        "due": _at("dueDateTime", "dateTime"),
        "importance": _at("importance"),
    },
    "drive_item": {
        "name": _at("name"),
        "path": _at("path"),
        "size": _at("size"),
    },
}


def graph_changes(
    subject: str, previous: dict[str, Any] | None, current: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """What changed on a Graph item since its previous snapshot."""
    if previous is None:
        return {}
    changes = {}
    for name, extract in GRAPH_CHANGE_FIELDS[subject].items():
        before, after = extract(previous), extract(current)
        if before != after:
            changes[name] = {"from": before, "to": after}
    return changes
