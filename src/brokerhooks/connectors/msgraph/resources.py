"""What brokerhooks writes to Graph, and the JSON bodies Graph expects.

The bodies follow the strict OpenAPI subset of Graph kept beside the
design notes; a contract test checks each of them against it. Times are
sent in UTC; naive datetimes are refused, since their zone is a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

JSON = dict[str, Any]

# The header on every mail brokerhooks sends: the key of the action that sent it.
KEY_HEADER = "x-brokerhooks-key"
BodyType = Literal["text", "html"]
Importance = Literal["low", "normal", "high"]
TaskStatus = Literal[
    "notStarted", "inProgress", "completed", "waitingOnOthers", "deferred"
]
ConflictBehavior = Literal["fail", "replace", "rename"]


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    name: str | None = None

    def to_graph(self) -> JSON:
        email: JSON = {"address": self.address}
        if self.name:
            email["name"] = self.name
        return {"emailAddress": email}


Address = str | Recipient


@dataclass(frozen=True, slots=True)
class LinkedResource:
    """A link from a To Do task to the deal it is about."""

    web_url: str
    application_name: str = "brokerhooks"
    display_name: str | None = None
    external_id: str | None = None

    def to_graph(self) -> JSON:
        value: JSON = {"webUrl": self.web_url, "applicationName": self.application_name}
        if self.display_name is not None:
            value["displayName"] = self.display_name
        if self.external_id is not None:
            value["externalId"] = self.external_id
        return value


@dataclass(frozen=True, slots=True)
class TaskFields:
    """A To Do task's fields; ``None`` leaves a field out (or unchanged)."""

    title: str | None = None
    body: str | None = None
    body_type: BodyType = "text"
    due: datetime | None = None
    reminder: datetime | None = None
    importance: Importance | None = None
    status: TaskStatus | None = None
    categories: Sequence[str] | None = None
    # Only on create: Graph takes linked resources inline then.
    linked_resource: LinkedResource | None = None

    def to_graph(self, *, creating: bool) -> JSON:
        value: JSON = {}
        if self.title is not None:
            value["title"] = self.title
        if self.body is not None:
            value["body"] = {"content": self.body, "contentType": self.body_type}
        if self.due is not None:
            value["dueDateTime"] = date_time_time_zone(self.due)
        if self.reminder is not None:
            value["reminderDateTime"] = date_time_time_zone(self.reminder)
            value["isReminderOn"] = True
        if self.importance is not None:
            value["importance"] = self.importance
        if self.status is not None:
            value["status"] = self.status
        if self.categories is not None:
            value["categories"] = list(self.categories)
        if self.linked_resource is not None:
            if not creating:
                raise ValueError("a linked resource can only be set on a new task")
            value["linkedResources"] = [self.linked_resource.to_graph()]
        return value


@dataclass(frozen=True, slots=True)
class MailMessage:
    """An HTML mail. ``headers`` become ``x-`` internet message headers."""

    to: Sequence[Address]
    subject: str
    html_body: str
    cc: Sequence[Address] = ()
    headers: Mapping[str, str] = field(default_factory=dict)

    def to_graph(self, *, save_to_sent_items: bool) -> JSON:
        """The body of a ``sendMail`` call."""
        return {"message": self.fields(), "saveToSentItems": save_to_sent_items}

    def fields(self) -> JSON:
        """The message resource's fields (a draft is made of these)."""
        if not self.to and not self.cc:
            raise ValueError("a mail needs at least one recipient")
        message: JSON = {
            "subject": self.subject,
            "body": {"contentType": "html", "content": self.html_body},
            "toRecipients": recipients(self.to),
        }
        if self.cc:
            message["ccRecipients"] = recipients(self.cc)
        if self.headers:
            message["internetMessageHeaders"] = [
                {"name": _custom_header(name), "value": value}
                for name, value in self.headers.items()
            ]
        return message


@dataclass(frozen=True, slots=True)
class EventFields:
    """A calendar event's fields; ``None`` leaves a field out (or unchanged)."""

    subject: str | None = None
    html_body: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    location: str | None = None
    attendees: Sequence[Address] | None = None
    reminder_minutes: int | None = None

    def to_graph(self) -> JSON:
        value: JSON = {}
        if self.subject is not None:
            value["subject"] = self.subject
        if self.html_body is not None:
            value["body"] = {"contentType": "html", "content": self.html_body}
        if self.start is not None:
            value["start"] = date_time_time_zone(self.start)
        if self.end is not None:
            value["end"] = date_time_time_zone(self.end)
        if self.start and self.end and self.end < self.start:
            raise ValueError("an event cannot end before it starts")
        if self.location is not None:
            value["location"] = {"displayName": self.location}
        if self.attendees is not None:
            value["attendees"] = [
                {**recipient, "type": "required"}
                for recipient in recipients(self.attendees)
            ]
        if self.reminder_minutes is not None:
            value["reminderMinutesBeforeStart"] = self.reminder_minutes
            value["isReminderOn"] = True
        return value


def date_time_time_zone(moment: datetime) -> JSON:
    """Graph's ``dateTimeTimeZone`` for an aware datetime, in UTC."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no time zone")
    utc = moment.astimezone(UTC)
    return {"dateTime": utc.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}


def recipients(addresses: Sequence[Address]) -> list[JSON]:
    return [
        (Recipient(item) if isinstance(item, str) else item).to_graph()
        for item in addresses
    ]


def _custom_header(name: str) -> str:
    # Exchange accepts only custom headers on a message, named x-something.
    if not name.lower().startswith("x-"):
        raise ValueError(f"mail header {name!r} must start with 'x-'")
    return name
