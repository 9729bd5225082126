"""The variables a rule sees, for each event type, with a realistic sample.

One table serves every reader: the condition and template checkers ask which
names exist for a trigger's event types, the validator renders templates
against the samples, the engine explains a missing value, and
docs/rules.md describes the same fields. The pipeline builds its context to
this shape::

    event     {id, type, source, entity_id, deal_id, received_at, payload}
    deal      the deal snapshot, or null
    contact   the contact snapshot, or null
    note      the note snapshot, or null
    previous  the previous snapshot of the event's subject, or null
    changes   {change name: {"from": ..., "to": ...}}, only what changed
    broker    {id, name, timezone}
    now       the time of the run (an aware datetime)

Which snapshots are set depends on the event's subject:

    subject   deal          contact                 note
    deal      the deal      its first client        always null
    contact   always null   the contact             always null
    note      its deal      always null             the note

On a first snapshot (a ``...Created`` event, or the first event seen for an
entity) ``previous`` is null and ``changes`` is empty.

Microsoft Graph events (``GRAPH_EVENT_TYPES``) have their own subjects,
``message``, ``calendar_event``, ``task`` and ``drive_item``, with ``deal``
and ``contact`` set when the item was matched to them (a mail by its
sender, a calendar event by its attendees, a task by the action that made
it) and ``note`` always null; ``GRAPH_VARIABLES`` lists them.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo

from brokerhooks.ingest.msgraph_events import EVENT_SUBJECTS as GRAPH_EVENT_SUBJECTS
from brokerhooks.ingest.msgraph_events import GRAPH_SUBJECTS, GraphSubject
from brokerhooks.ingest.salestrekker_events import EVENT_SUBJECTS, Subject

EVENT_TYPES: Final[tuple[str, ...]] = tuple(EVENT_SUBJECTS)
GRAPH_EVENT_TYPES: Final[tuple[str, ...]] = tuple(GRAPH_EVENT_SUBJECTS)
ALL_EVENT_TYPES: Final[tuple[str, ...]] = (*EVENT_TYPES, *GRAPH_EVENT_TYPES)
VARIABLES: Final[tuple[str, ...]] = (
    "event",
    "deal",
    "contact",
    "note",
    "previous",
    "changes",
    "broker",
    "now",
)


class FieldType(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ID = "id"
    EPOCH_MS = "epoch-ms"  # a date as milliseconds since 1970, as SalesTrekker sends
    TIMESTAMP = "timestamp"  # an aware datetime (a CEL timestamp)
    LIST = "list"
    OBJECT = "object"
    ANY = "any"  # free-form JSON: nothing below it is checked
    ABSENT = "absent"  # always null for this event type


@dataclass(frozen=True, slots=True)
class Field:
    """One variable or field: its type, what it means, and what it holds."""

    type: FieldType
    doc: str = ""
    fields: Mapping[str, Field] = field(default_factory=dict)
    item: Field | None = None
    nullable: bool = False

    @property
    def is_date(self) -> bool:
        return self.type in (FieldType.EPOCH_MS, FieldType.TIMESTAMP)


def _scalar(kind: FieldType, doc: str, *, nullable: bool = False) -> Field:
    return Field(kind, doc, nullable=nullable)


def _object(doc: str, fields: Mapping[str, Field], *, nullable: bool = False) -> Field:
    return Field(FieldType.OBJECT, doc, fields=fields, nullable=nullable)


def _list(doc: str, item: Field) -> Field:
    return Field(FieldType.LIST, doc, item=item)


def _named(what: str) -> Field:
    return _object(
        f"the {what}: id and name",
        {
            "id": _scalar(FieldType.ID, f"the {what}'s id"),
            "name": _scalar(FieldType.STRING, f"the {what}'s name", nullable=True),
        },
    )


_S, _N, _B, _ID = FieldType.STRING, FieldType.NUMBER, FieldType.BOOLEAN, FieldType.ID
_MS = FieldType.EPOCH_MS

DEAL: Final = _object(
    "a deal (a SalesTrekker ticket)",
    {
        "id": _scalar(_ID, "the deal's id"),
        "name": _scalar(_S, "the deal's name"),
        "description": _scalar(_S, "free text", nullable=True),
        "idOwner": _scalar(_ID, "the id of the user who owns the deal"),
        "isActive": _scalar(_B, "false once the deal is archived"),
        "idWorkflow": _scalar(_ID, "the id of the deal's workflow"),
        "idStage": _scalar(_ID, "the id of the deal's stage"),
        "idClients": _list("the ids of the deal's clients", _scalar(_ID, "")),
        "idLabels": _list("the ids of the deal's labels", _scalar(_ID, "")),
        "values": _object(
            "amounts",
            {"onceOff": _scalar(_N, "the loan amount", nullable=True)},
        ),
        "ticketClientTypes": _list(
            "each client's role on the deal",
            _object(
                "a client's role",
                {
                    "idContact": _scalar(_ID, "the client's contact id"),
                    "idLabel": _scalar(_ID, "the role's label id", nullable=True),
                },
            ),
        ),
        "dueDate": _scalar(_MS, "the due (settlement) date", nullable=True),
        "isWon": _scalar(_B, "the deal is won"),
        "isLost": _scalar(_B, "the deal is lost"),
        "isSettled": _scalar(_B, "the deal is settled"),
        "isInProgress": _scalar(_B, "the deal is neither won nor lost"),
        "timeStamp": _scalar(_MS, "when the deal was last changed", nullable=True),
        "workflow": _named("workflow"),
        "stage": _named("stage"),
        "labels": _list("the deal's labels", _named("label")),
    },
)

CONTACT: Final = _object(
    "a contact (a person)",
    {
        "id": _scalar(_ID, "the contact's id"),
        "idOwner": _scalar(_ID, "the id of the user who owns the contact"),
        "description": _scalar(_S, "free text", nullable=True),
        "isActive": _scalar(_B, "false once the contact is archived"),
        "idLabels": _list("the ids of the contact's labels", _scalar(_ID, "")),
        "person": _object(
            "the person",
            {
                "information": _object(
                    "names",
                    {
                        "firstName": _scalar(_S, "first name", nullable=True),
                        "familyName": _scalar(_S, "family name", nullable=True),
                        "preferredName": _scalar(_S, "preferred name", nullable=True),
                    },
                ),
                "contact": _object(
                    "e-mail and phones",
                    {
                        "email": _scalar(_S, "e-mail address", nullable=True),
                        "secondaryEmail": _scalar(_S, "second address", nullable=True),
                        "primaryCode": _scalar(_S, "mobile prefix", nullable=True),
                        "primary": _scalar(_S, "mobile number", nullable=True),
                        "homeCode": _scalar(_S, "home phone prefix", nullable=True),
                        "home": _scalar(_S, "home phone number", nullable=True),
                    },
                ),
            },
        ),
    },
)

NOTE: Final = _object(
    "a note on a deal",
    {
        "id": _scalar(_ID, "the note's id"),
        "idTicket": _scalar(_ID, "the id of the note's deal"),
        "idOwner": _scalar(_ID, "the id of the note's author"),
        "idWorkflow": _scalar(_ID, "the id of the deal's workflow", nullable=True),
        "content": _scalar(_S, "the note's text"),
        "isActive": _scalar(_B, "false once the note is deleted"),
        "type": _object(
            "the kind of note",
            {"name": _scalar(_S, "comment or system_event", nullable=True)},
        ),
        "timeStamp": _scalar(_MS, "when the note was written", nullable=True),
    },
)


def _change(doc: str, value: Field) -> Field:
    side = replace(value, nullable=True)
    return _object(doc, {"from": side, "to": side})


# The changes the pipeline computes, by subject: the name under `changes`
# and the shape of its `from` and `to`.
CHANGES: Final[Mapping[Subject, Field]] = {
    "deal": _object(
        "what changed on the deal",
        {
            "stage": _change("the stage", _named("stage")),
            "workflow": _change("the workflow", _named("workflow")),
            "won": _change("won or not", _scalar(_B, "")),
            "lost": _change("lost or not", _scalar(_B, "")),
            "settled": _change("settled or not", _scalar(_B, "")),
            "in_progress": _change("in progress or not", _scalar(_B, "")),
            "active": _change("archived or not", _scalar(_B, "")),
            "owner": _change("the owner's user id", _scalar(_ID, "")),
            "due_date": _change("the due date", _scalar(_MS, "")),
            "amount": _change("the loan amount", _scalar(_N, "")),
            "labels": _change("the labels", _list("", _named("label"))),
            "clients": _change("the client ids", _list("", _scalar(_ID, ""))),
            "name": _change("the name", _scalar(_S, "")),
            "description": _change("the description", _scalar(_S, "")),
        },
    ),
    "contact": _object(
        "what changed on the contact",
        {
            "first_name": _change("first name", _scalar(_S, "")),
            "family_name": _change("family name", _scalar(_S, "")),
            "preferred_name": _change("preferred name", _scalar(_S, "")),
            "email": _change("e-mail address", _scalar(_S, "")),
            "secondary_email": _change("second e-mail address", _scalar(_S, "")),
            "phone": _change("mobile, prefix and number", _scalar(_S, "")),
            "home_phone": _change("home phone, prefix and number", _scalar(_S, "")),
            "owner": _change("the owner's user id", _scalar(_ID, "")),
            "active": _change("archived or not", _scalar(_B, "")),
            "labels": _change("the label ids", _list("", _scalar(_ID, ""))),
        },
    ),
    "note": _object(
        "what changed on the note",
        {
            "content": _change("the note's text", _scalar(_S, "")),
            "active": _change("deleted or not", _scalar(_B, "")),
            "owner": _change("the author's user id", _scalar(_ID, "")),
        },
    ),
}

EVENT: Final = _object(
    "the event being processed",
    {
        "id": _scalar(_ID, "the event's id in brokerhooks"),
        "type": _scalar(_S, "the event type, e.g. dealChangesStage"),
        "source": _scalar(_S, "where it came from: salestrekker or msgraph"),
        "entity_id": _scalar(
            _ID, "the id of the deal, contact or note (or Microsoft 365 item)"
        ),
        "deal_id": _scalar(
            _ID,
            "the deal's id, for deal and note events (and matched Graph events)",
            nullable=True,
        ),
        "received_at": _scalar(FieldType.TIMESTAMP, "when brokerhooks received it"),
        "payload": Field(
            FieldType.ANY, "the webhook's JSON body, or the Graph notification"
        ),
        "caused_by": _object(
            "the brokerhooks action that made this event's item (a note, task, "
            "calendar event or mail), or made this change to a calendar "
            "event, if one did; null otherwise",
            {
                "rule": _scalar(_S, "the rule of that action"),
                "step": _scalar(_S, "its step"),
                "kind": _scalar(_S, "its kind, e.g. salestrekker_note"),
                "action": _scalar(_S, "its key in the ledger"),
                "event": _scalar(_ID, "the event it ran for"),
                "rules": _list(
                    "every rule of the chain that led here, newest first",
                    _scalar(_S, ""),
                ),
            },
            nullable=True,
        ),
    },
)

BROKER: Final = _object(
    "the broker who owns the rule",
    {
        "id": _scalar(_ID, "the broker's id"),
        "name": _scalar(_S, "the broker's name"),
        "timezone": _scalar(_S, "IANA time zone for dates", nullable=True),
    },
)

NOW: Final = _scalar(FieldType.TIMESTAMP, "the time of the run")

_SNAPSHOTS: Final[Mapping[Subject, Field]] = {
    "deal": DEAL,
    "contact": CONTACT,
    "note": NOTE,
}


def _absent(name: str, subject: Subject) -> Field:
    return Field(FieldType.ABSENT, f"{name} is always null on {subject} events")


def _variables_of(subject: Subject) -> dict[str, Field]:
    related = {"deal": "contact", "note": "deal", "contact": None}[subject]
    snapshots: dict[str, Field] = {}
    for name, schema in _SNAPSHOTS.items():
        if name == subject:
            snapshots[name] = schema
        elif name == related:
            snapshots[name] = replace(schema, nullable=True)
        else:
            snapshots[name] = _absent(name, subject)
    return {
        "event": EVENT,
        **snapshots,
        "previous": replace(_SNAPSHOTS[subject], nullable=True),
        "changes": CHANGES[subject],
        "broker": BROKER,
        "now": NOW,
    }


_BY_SUBJECT: Final = {subject: _variables_of(subject) for subject in _SNAPSHOTS}


def variables(event_type: str) -> Mapping[str, Field]:
    """The variables a rule sees on ``event_type`` (a canonical name)."""
    graph = GRAPH_EVENT_SUBJECTS.get(event_type)
    if graph is not None:
        return _GRAPH_BY_SUBJECT[graph]
    return _BY_SUBJECT[EVENT_SUBJECTS[event_type]]


def events_with(variable: str) -> list[str]:
    """The event types on which ``variable`` can be set."""
    return [
        event_type
        for event_type in ALL_EVENT_TYPES
        if variable in variables(event_type)
        and variables(event_type)[variable].type is not FieldType.ABSENT
    ]


# ---------------------------------------------------------------- Graph

_TEXT_TIME = "ISO 8601 text, UTC"


def _address_of(what: str, *, nullable: bool = False) -> Field:
    return _object(
        f"{what}: name and address",
        {
            "name": _scalar(_S, "the display name", nullable=True),
            "address": _scalar(_S, "the e-mail address", nullable=True),
        },
        nullable=nullable,
    )


def _graph_time(doc: str) -> Field:
    return _object(
        doc,
        {
            "dateTime": _scalar(_S, "local date and time, ISO 8601 text"),
            "timeZone": _scalar(_S, "its time zone, e.g. UTC", nullable=True),
        },
        nullable=True,
    )


MESSAGE: Final = _object(
    "a mail in the connection's inbox",
    {
        "id": _scalar(_ID, "the message's id in Outlook"),
        "subject": _scalar(_S, "the subject"),
        "bodyPreview": _scalar(_S, "the first 255 characters of the body, as text"),
        "from": _address_of("the sender"),
        "to": _list("the To recipients", _address_of("a recipient")),
        "cc": _list("the Cc recipients", _address_of("a recipient")),
        "receivedDateTime": _scalar(_S, f"when it arrived, {_TEXT_TIME}"),
        "sentDateTime": _scalar(_S, f"when it was sent, {_TEXT_TIME}", nullable=True),
        "hasAttachments": _scalar(_B, "it has attachments"),
        "importance": _scalar(_S, "low, normal or high"),
        "isRead": _scalar(_B, "it has been read"),
        "conversationId": _scalar(_ID, "the conversation (thread)", nullable=True),
        "webLink": _scalar(_S, "where to open it in Outlook on the web", nullable=True),
        "categories": _list("Outlook categories", _scalar(_S, "")),
        "brokerhooksKey": _scalar(
            _S,
            "the key of the brokerhooks action that sent this mail, if one did",
            nullable=True,
        ),
    },
)

CALENDAR_EVENT: Final = _object(
    "an event in the connection's Outlook calendar",
    {
        "id": _scalar(_ID, "the event's id in Outlook"),
        "subject": _scalar(_S, "the subject"),
        "bodyPreview": _scalar(_S, "the start of its text"),
        "start": _graph_time("when it starts"),
        "end": _graph_time("when it ends"),
        "location": _scalar(_S, "the location's name"),
        "organizer": _address_of("the organizer"),
        "attendees": _list(
            "the attendees",
            _object(
                "an attendee",
                {
                    "name": _scalar(_S, "the display name", nullable=True),
                    "address": _scalar(_S, "the e-mail address", nullable=True),
                    "type": _scalar(
                        _S, "required, optional or resource", nullable=True
                    ),
                    "response": _scalar(_S, "their answer", nullable=True),
                },
            ),
        ),
        "isAllDay": _scalar(_B, "an all-day event"),
        "isCancelled": _scalar(_B, "cancelled"),
        "webLink": _scalar(_S, "where to open it in Outlook", nullable=True),
        "categories": _list("Outlook categories", _scalar(_S, "")),
        "changeKey": _scalar(
            _S,
            "Outlook's version of the event; every change gives a new one",
            nullable=True,
        ),
    },
)

TASK: Final = _object(
    "a task in a Microsoft To Do list",
    {
        "id": _scalar(_ID, "the task's id in To Do"),
        "listId": _scalar(_ID, "the id of its list"),
        "title": _scalar(_S, "the title"),
        "body": _scalar(_S, "the notes, as text"),
        "status": _scalar(
            _S, "notStarted, inProgress, completed, waitingOnOthers or deferred"
        ),
        "importance": _scalar(_S, "low, normal or high"),
        "dueDateTime": _graph_time("when it is due"),
        "completedDateTime": _graph_time("when it was completed"),
        "createdDateTime": _scalar(
            _S, f"when it was made, {_TEXT_TIME}", nullable=True
        ),
        "lastModifiedDateTime": _scalar(
            _S, f"when it last changed, {_TEXT_TIME}", nullable=True
        ),
        "categories": _list("categories", _scalar(_S, "")),
        "linkedResources": _list(
            "links to what the task is about; brokerhooks' own name the action",
            _object(
                "a linked resource",
                {
                    "applicationName": _scalar(_S, "who made the link", nullable=True),
                    "externalId": _scalar(_S, "the maker's id for it", nullable=True),
                    "webUrl": _scalar(_S, "where it points", nullable=True),
                    "displayName": _scalar(_S, "its title", nullable=True),
                },
            ),
        ),
    },
)

DRIVE_ITEM: Final = _object(
    "a file or folder in the connection's OneDrive",
    {
        "id": _scalar(_ID, "the item's id in OneDrive"),
        "name": _scalar(_S, "the file or folder name"),
        "path": _scalar(_S, "its path from the root, e.g. Clients/Nguyen/id.pdf"),
        "webUrl": _scalar(_S, "where to open it", nullable=True),
        "size": _scalar(_N, "the size in bytes"),
        "isFolder": _scalar(_B, "a folder, not a file"),
        "mimeType": _scalar(_S, "a file's type", nullable=True),
        "createdDateTime": _scalar(
            _S, f"when it was made, {_TEXT_TIME}", nullable=True
        ),
        "lastModifiedDateTime": _scalar(
            _S, f"when it last changed, {_TEXT_TIME}", nullable=True
        ),
        "deleted": _scalar(_B, "it was deleted (driveItemDeleted)"),
    },
)

GRAPH_SNAPSHOTS: Final[Mapping[GraphSubject, Field]] = {
    "message": MESSAGE,
    "calendar_event": CALENDAR_EVENT,
    "task": TASK,
    "drive_item": DRIVE_ITEM,
}

# The changes of Graph items, as ``pipeline.enrich.GRAPH_CHANGE_FIELDS``
# computes them.
GRAPH_CHANGES: Final[Mapping[GraphSubject, Field]] = {
    "message": _object(
        "what changed on the message",
        {
            "read": _change("read or not", _scalar(_B, "")),
            "importance": _change("the importance", _scalar(_S, "")),
            "categories": _change("the categories", _list("", _scalar(_S, ""))),
            "subject": _change("the subject", _scalar(_S, "")),
        },
    ),
    "calendar_event": _object(
        "what changed on the calendar event",
        {
            "start": _change("the start, ISO 8601 text", _scalar(_S, "")),
            "end": _change("the end, ISO 8601 text", _scalar(_S, "")),
            "subject": _change("the subject", _scalar(_S, "")),
            "location": _change("the location", _scalar(_S, "")),
            "cancelled": _change("cancelled or not", _scalar(_B, "")),
        },
    ),
    "task": _object(
        "what changed on the task",
        {
            "status": _change("the status", _scalar(_S, "")),
            "title": _change("the title", _scalar(_S, "")),
            "due": _change("the due date, ISO 8601 text", _scalar(_S, "")),
            "importance": _change("the importance", _scalar(_S, "")),
        },
    ),
    "drive_item": _object(
        "what changed on the file or folder",
        {
            "name": _change("the name", _scalar(_S, "")),
            "path": _change("the path", _scalar(_S, "")),
            "size": _change("the size", _scalar(_N, "")),
        },
    ),
}

GRAPH_VARIABLES: Final[tuple[str, ...]] = (
    "event",
    *GRAPH_SUBJECTS,
    "deal",
    "contact",
    "note",
    "previous",
    "changes",
    "broker",
    "now",
)


def _graph_absent(name: str, subject: GraphSubject) -> Field:
    return Field(FieldType.ABSENT, f"{name} is always null on {subject} events")


def _graph_variables_of(subject: GraphSubject) -> dict[str, Field]:
    items: dict[str, Field] = {
        name: schema if name == subject else _graph_absent(name, subject)
        for name, schema in GRAPH_SNAPSHOTS.items()
    }
    # Mails, calendar events and tasks are matched to deals; files are not.
    matched = subject != "drive_item"
    return {
        "event": EVENT,
        **items,
        "deal": replace(DEAL, nullable=True)
        if matched
        else _graph_absent("deal", subject),
        "contact": replace(CONTACT, nullable=True)
        if matched
        else _graph_absent("contact", subject),
        "note": _graph_absent("note", subject),
        "previous": replace(GRAPH_SNAPSHOTS[subject], nullable=True),
        "changes": GRAPH_CHANGES[subject],
        "broker": BROKER,
        "now": NOW,
    }


_GRAPH_BY_SUBJECT: Final = {
    subject: _graph_variables_of(subject) for subject in GRAPH_SNAPSHOTS
}


# ---------------------------------------------------------------- paths

# A path is what a condition or template reads: ("deal", "stage", "name").
# A str segment is a field or key; an int is a list index.
Segment = str | int
Path = tuple[Segment, ...]


def format_path(path: Sequence[Segment]) -> str:
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else segment
    return text


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate ``word`` was most likely meant to be, or None."""
    options = list(candidates)
    for option in options:
        if option.lower() == word.lower():
            return option
    lowered = {option.lower(): option for option in options}
    found = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[found[0]] if found else None


@dataclass(frozen=True, slots=True)
class PathProblem:
    """Why a path does not exist, and how to fix it."""

    path: str
    problem: str
    fix: str
    suggestion: str | None = None


@dataclass(frozen=True, slots=True)
class _Miss:
    index: int  # the first segment that fails
    reason: str  # unknown, absent, no-fields, not-a-list
    parent: Field | None
    candidates: tuple[str, ...] = ()


def _walk(path: Path, roots: Mapping[str, Field]) -> _Miss | None:
    current: Field | None = None
    for index, segment in enumerate(path):
        if current is None:
            current = roots.get(str(segment))
            if current is None:
                return _Miss(index, "unknown", None, tuple(roots))
        elif current.type is FieldType.ANY:
            return None
        elif isinstance(segment, int):
            if current.type is not FieldType.LIST:
                return _Miss(index, "not-a-list", current)
            current = current.item
        elif current.type is FieldType.OBJECT:
            parent, current = current, current.fields.get(segment)
            if current is None:
                return _Miss(index, "unknown", parent, tuple(parent.fields))
        else:
            return _Miss(index, "no-fields", current)
        absent = current is not None and current.type is FieldType.ABSENT
        if absent and index + 1 < len(path):
            return _Miss(index, "absent", current)
    return None


def check_path(
    path: Path,
    event_types: Sequence[str],
    *,
    written: Path | None = None,
) -> PathProblem | None:
    """Whether ``path`` exists on every one of ``event_types``.

    ``written`` is the path as the author wrote it, when a name stands for a
    longer one (``l.name`` inside ``deal.labels.exists(l, ...)`` checks
    ``deal.labels[0].name``); messages quote what was written.
    """
    written = written or path
    shift = len(path) - len(written)
    misses = {et: _walk(path, variables(et)) for et in event_types}
    failing = [et for et, miss in misses.items() if miss is not None]
    if not failing:
        return None
    miss = misses[failing[0]]
    assert miss is not None
    if miss.reason == "absent":
        root = str(path[0])
        return PathProblem(
            format_path(written),
            f"'{format_path(written)}' cannot be read: {root} is always null "
            f"on {_join(failing)} events",
            f"{root} is set only on {_join(events_with(root))} events; "
            "trigger on those or remove the reference",
        )
    where = "" if len(failing) == len(event_types) else f" on {_join(failing)} events"
    return _explain(miss, written, max(0, miss.index - shift), where)


def _explain(miss: _Miss, written: Path, at: int, where: str) -> PathProblem:
    bad = format_path(written[: at + 1])
    parent_text = format_path(written[:at])
    segment = str(written[at])
    if miss.reason == "not-a-list":
        assert miss.parent is not None
        return PathProblem(
            bad,
            f"'{bad}' is undefined: {parent_text} is a {miss.parent.type}, not a list",
            f"remove [{segment}]",
        )
    if miss.reason == "no-fields":
        assert miss.parent is not None
        return PathProblem(
            bad,
            f"'{bad}' is undefined: {parent_text} is a {miss.parent.type} "
            "and has no fields",
            f"remove .{segment}",
        )
    guess = closest(segment, miss.candidates)
    if guess is not None:
        suggestion = format_path((*written[:at], guess))
        return PathProblem(
            bad,
            f"'{bad}' is undefined{where}",
            f"did you mean {suggestion}?",
            suggestion,
        )
    owner = f"the fields of {parent_text} are" if at else "the variables are"
    return PathProblem(
        bad, f"'{bad}' is undefined{where}", f"{owner}: {', '.join(miss.candidates)}"
    )


def _join(names: Sequence[str]) -> str:
    return ", ".join(names)


def field_at(path: Path, event_type: str) -> Field | None:
    """The field ``path`` names on ``event_type``, or None if there is none."""
    current: Field | None = None
    for segment in path:
        if current is None:
            current = variables(event_type).get(str(segment))
        elif isinstance(segment, int):
            current = current.item if current.type is FieldType.LIST else None
        else:
            current = current.fields.get(segment)
        if current is None:
            return None
    return current


def date_fields(event_type: str) -> list[str]:
    """Every path to a date on ``event_type``, for schedules and messages."""
    found: list[str] = []

    def visit(prefix: str, node: Field) -> None:
        if node.is_date:
            found.append(prefix)
        for name, child in node.fields.items():
            visit(f"{prefix}.{name}", child)

    for name, root in variables(event_type).items():
        visit(name, root)
    return found


@dataclass(frozen=True, slots=True)
class Reference:
    """A field path that a condition or template reads.

    ``written`` is the path as written; ``path`` the field it stands for.
    They differ for a loop variable: ``l.name`` inside
    ``deal.labels.exists(l, ...)`` or ``{% for l in deal.labels %}`` stands
    for ``deal.labels[0].name``. ``guarded`` is true where a missing value
    is expected and handled (``has(...)``, ``is defined``, ``| default``).
    """

    path: Path
    written: Path
    guarded: bool = False

    @property
    def bound(self) -> bool:
        return self.path != self.written

    @property
    def text(self) -> str:
        return format_path(self.written)


def check_references(
    references: Iterable[Reference], event_types: Sequence[str]
) -> list[PathProblem]:
    """The problems of every reference on ``event_types``, each told once."""
    problems: list[PathProblem] = []
    for reference in references:
        if reference.bound:
            base = reference.path[: len(reference.path) - len(reference.written) + 1]
            if check_path(base, event_types) is not None:
                continue  # the list itself is reported where it is named
        problem = check_path(reference.path, event_types, written=reference.written)
        if problem is not None and problem not in problems:
            problems.append(problem)
    return problems


@dataclass(frozen=True, slots=True)
class Resolved:
    """A path looked up in real data: its value, or why there is none."""

    value: Any = None
    missing: str | None = None
    fix: str = ""


_CHANGE_NAMES: Final = frozenset(
    name for c in (*CHANGES.values(), *GRAPH_CHANGES.values()) for name in c.fields
)
_GUARDS: Final = {
    "cel": "test has({path}) first",
    "jinja": "wrap it in {{% if {path} is defined %}}",
}


def resolve(path: Path, data: Mapping[str, Any], *, language: str = "cel") -> Resolved:
    """Look ``path`` up in a rule's variables, explaining a miss.

    ``language`` (``cel`` or ``jinja``) picks how the fix says to guard
    against a change that is not there.
    """
    value: Any = data
    for index, segment in enumerate(path):
        seen = format_path(path[:index])
        here = format_path(path[: index + 1])
        if value is None and index:
            return Resolved(
                missing=f"'{format_path(path)}' cannot be read: {seen} is null",
                fix=f"check {seen} != null first"
                if language == "cel"
                else f"wrap it in {{% if {seen} %}}",
            )
        if isinstance(segment, int):
            if not isinstance(value, list) or not -len(value) <= segment < len(value):
                return Resolved(
                    missing=f"'{here}' is undefined: {seen} has no item {segment}",
                    fix=f"check size({seen}) first"
                    if language == "cel"
                    else f"check {seen} | length first",
                )
            value = value[segment]
        elif isinstance(value, Mapping) and segment in value:
            value = value[segment]
        else:
            return _missing_key(path, index, value, language)
    return Resolved(value)


def _missing_key(path: Path, index: int, value: Any, language: str) -> Resolved:
    here = format_path(path[: index + 1])
    segment = str(path[index])
    if path[0] == "changes" and index == 1 and segment in _CHANGE_NAMES:
        return Resolved(
            missing=f"'{here}' is undefined: {segment} did not change",
            fix=_GUARDS[language].format(path=here),
        )
    keys = [str(key) for key in value] if isinstance(value, Mapping) else []
    if path[0] == "changes" and index == 1:
        keys = sorted(_CHANGE_NAMES)
    guess = closest(segment, keys)
    fix = f"did you mean {format_path((*path[:index], guess))}?" if guess else ""
    return Resolved(missing=f"'{here}' is undefined", fix=fix)


# ---------------------------------------------------------------- samples

SAMPLE_TIMEZONE: Final = ZoneInfo("Australia/Sydney")
SAMPLE_NOW: Final = datetime(2025, 3, 14, 9, 30, tzinfo=SAMPLE_TIMEZONE)


def _ms(year: int, month: int, day: int, hour: int = 0) -> int:
    moment = datetime(year, month, day, hour, tzinfo=SAMPLE_TIMEZONE)
    return int(moment.timestamp() * 1000)


_WORKFLOW = {"id": "5d0e9b7a-3c1f-4e2a-9b8d-7f6a1c2e4b90", "name": "Home Loans"}
_COMMERCIAL = {"id": "a8c2e6f4-1b3d-4f5a-8e7c-9d0b2a4c6e81", "name": "Commercial Loans"}
_SUBMITTED = {"id": "c4f1a9e2-6b8d-4a3c-b7e5-2d9f0a1c8b36", "name": "5. Submitted"}
_APPROVED = {"id": "e7b3d5a1-9c2f-4e8b-a6d4-3f1c7e9b2a05", "name": "6. Approved"}
_REFINANCE = {"id": "1f9d7b5c-3a2e-4c6f-8d0b-5e7a9c1f3d24", "name": "Refinance"}
_FIRST_HOME = {"id": "6b4e2c8a-0d9f-4b1e-a3c5-7f2d4b6e8a13", "name": "First home buyer"}
_OWNER = "3f6a2c1e-5b7d-4e9a-a0c3-8d2b6f1e4a07"
_OTHER_OWNER = "7b2e9d4c-1a3f-4c8e-b5d0-6e9f2a7c3b18"
_CLIENT = "41d8c3b2-9e6f-4a1d-8c7b-5f0e2d9a6b34"
_PARTNER = "8e5a1c7d-2f4b-4d9e-b0a6-3c8f5e1d7a92"
_CLIENT_LABEL = "b3a7f1d9-5e2c-4a8b-9f6d-0c4e8a2b6f57"
_DEAL_ID = "9c1e5b0a-7d3f-4a2e-8b61-2f4d9e0c7a15"
_NOTE_ID = "2a6c8e0b-4d1f-4b3a-9c5e-8f0a2c4e6b79"

_DEAL: Final[dict[str, Any]] = {
    "id": _DEAL_ID,
    "name": "Nguyen - Refinance 12 Banksia St, Marrickville",
    "description": "Refinance to a 3-year fixed rate; valuation ordered.",
    "idOwner": _OWNER,
    "isActive": True,
    "idWorkflow": _WORKFLOW["id"],
    "idStage": _APPROVED["id"],
    "idClients": [_CLIENT, _PARTNER],
    "idLabels": [_REFINANCE["id"]],
    "values": {"onceOff": 650000.0},
    "ticketClientTypes": [
        {"idContact": _CLIENT, "idLabel": _CLIENT_LABEL},
        {"idContact": _PARTNER, "idLabel": None},
    ],
    "dueDate": _ms(2025, 4, 11),
    "isWon": False,
    "isLost": False,
    "isSettled": False,
    "isInProgress": True,
    "timeStamp": _ms(2025, 3, 14, 9),
    "workflow": _WORKFLOW,
    "stage": _APPROVED,
    "labels": [_REFINANCE],
}

_CONTACT: Final[dict[str, Any]] = {
    "id": _CLIENT,
    "idOwner": _OWNER,
    "description": "Prefers e-mail; works shifts.",
    "isActive": True,
    "idLabels": [_CLIENT_LABEL],
    "person": {
        "information": {
            "firstName": "Linh",
            "familyName": "Nguyen",
            "preferredName": "Lin",
        },
        "contact": {
            "email": "linh.nguyen@example.com",
            "secondaryEmail": None,
            "primaryCode": "+61",
            "primary": "412 345 678",
            "homeCode": "02",
            "home": "9550 1234",
        },
    },
}

_NOTE: Final[dict[str, Any]] = {
    "id": _NOTE_ID,
    "idTicket": _DEAL_ID,
    "idOwner": _OWNER,
    "idWorkflow": _WORKFLOW["id"],
    "content": "Client called: wants to lock the rate before 30 June.",
    "isActive": True,
    "type": {"name": "comment"},
    "timeStamp": _ms(2025, 3, 14, 9),
}

# Every change, with the deal, contact or note above as its `to` side.
_ALL_CHANGES: Final[dict[Subject, dict[str, dict[str, Any]]]] = {
    "deal": {
        "stage": {"from": _SUBMITTED, "to": _APPROVED},
        "workflow": {"from": _COMMERCIAL, "to": _WORKFLOW},
        "won": {"from": True, "to": False},
        "lost": {"from": True, "to": False},
        "settled": {"from": True, "to": False},
        "in_progress": {"from": False, "to": True},
        "active": {"from": False, "to": True},
        "owner": {"from": _OTHER_OWNER, "to": _OWNER},
        "due_date": {"from": _ms(2025, 4, 4), "to": _DEAL["dueDate"]},
        "amount": {"from": 620000.0, "to": 650000.0},
        "labels": {"from": [], "to": [_REFINANCE]},
        "clients": {"from": [_CLIENT], "to": [_CLIENT, _PARTNER]},
        "name": {"from": "Nguyen - Refinance", "to": _DEAL["name"]},
        "description": {"from": None, "to": _DEAL["description"]},
    },
    "contact": {
        "first_name": {"from": "Lihn", "to": "Linh"},
        "family_name": {"from": "Ngyuen", "to": "Nguyen"},
        "preferred_name": {"from": None, "to": "Lin"},
        "email": {"from": "linh.n@example.net", "to": "linh.nguyen@example.com"},
        "secondary_email": {"from": "linh.n@example.net", "to": None},
        "phone": {"from": "+61 412 000 111", "to": "+61 412 345 678"},
        "home_phone": {"from": None, "to": "02 9550 1234"},
        "owner": {"from": _OTHER_OWNER, "to": _OWNER},
        "active": {"from": False, "to": True},
        "labels": {"from": [], "to": [_CLIENT_LABEL]},
    },
    "note": {
        "content": {"from": "Client called.", "to": _NOTE["content"]},
        "active": {"from": False, "to": True},
        "owner": {"from": _OTHER_OWNER, "to": _OWNER},
    },
}

# What typically changed on each event type, as a sample shows it.
_TYPICAL_CHANGES: Final[Mapping[str, tuple[str, ...]]] = {
    "dealUpdated": ("amount", "name"),
    "dealChangesDueDate": ("due_date",),
    "dealChangesStage": ("stage",),
    "dealChangesWorkflow": ("workflow", "stage"),
    "dealChangesStatus": ("won", "in_progress"),
    "dealChangesOwner": ("owner",),
    "contactUpdated": ("email", "phone"),
    "noteUpdated": ("content",),
}

# The snapshot fields that hold each change, to rebuild `previous`.
_CHANGE_SOURCES: Final[Mapping[str, Mapping[str, Any]]] = {
    "stage": {"idStage": _SUBMITTED["id"], "stage": _SUBMITTED},
    "workflow": {"idWorkflow": _COMMERCIAL["id"], "workflow": _COMMERCIAL},
    "won": {"isWon": True},
    "in_progress": {"isInProgress": False},
    "owner": {"idOwner": _OTHER_OWNER},
    "due_date": {"dueDate": _ms(2025, 4, 4)},
    "amount": {"values": {"onceOff": 620000.0}},
    "name": {"name": "Nguyen - Refinance"},
    "content": {"content": "Client called."},
}

_FIRST_EVENTS: Final = frozenset({"dealCreated", "contactCreated", "noteCreated"})


def _previous(subject_data: dict[str, Any], changed: Sequence[str]) -> dict[str, Any]:
    previous = copy.deepcopy(subject_data)
    for name in changed:
        previous.update(copy.deepcopy(dict(_CHANGE_SOURCES.get(name, {}))))
    if "person" in previous:
        contact = previous["person"]["contact"]
        if "email" in changed:
            contact["email"] = "linh.n@example.net"
        if "phone" in changed:
            contact["primary"] = "412 000 111"
    return previous


def sample_context(event_type: str, *, all_changes: bool = False) -> dict[str, Any]:
    """A realistic context for ``event_type`` (a canonical name).

    With ``all_changes`` every change of the subject is present, so that a
    template naming any change renders; the validator uses that.
    """
    if event_type in GRAPH_EVENT_SUBJECTS:
        return _graph_sample(event_type, all_changes=all_changes)
    subject = EVENT_SUBJECTS[event_type]
    snapshots: dict[str, Any] = {
        "deal": copy.deepcopy(_DEAL) if subject in ("deal", "note") else None,
        "contact": copy.deepcopy(_CONTACT) if subject in ("deal", "contact") else None,
        "note": copy.deepcopy(_NOTE) if subject == "note" else None,
    }
    changed = _TYPICAL_CHANGES.get(event_type, ())
    if all_changes:
        changed = tuple(_ALL_CHANGES[subject])
    first = event_type in _FIRST_EVENTS and not all_changes
    changes = {name: copy.deepcopy(_ALL_CHANGES[subject][name]) for name in changed}
    entity_id = snapshots[subject]["id"]
    payload: dict[str, Any] = {"event": event_type, "id": entity_id}
    if event_type == "noteCreated":
        payload["idDeal"] = _DEAL_ID
    return {
        "event": {
            "id": "0b7d3f9e-1c5a-4e8b-a2d6-9f4c1e7b3a58",
            "type": event_type,
            "source": "salestrekker",
            "entity_id": entity_id,
            "deal_id": None if subject == "contact" else _DEAL_ID,
            "received_at": SAMPLE_NOW,
            "payload": payload,
            "caused_by": None,
        },
        **snapshots,
        "previous": None if first else _previous(snapshots[subject], changed),
        "changes": {} if first else changes,
        "broker": {
            "id": "d2f8b4a6-7e1c-4b9d-8a3f-5c0e6b2d9f14",
            "name": "Harbour Home Loans",
            "timezone": "Australia/Sydney",
        },
        "now": SAMPLE_NOW,
    }


# ---------------------------------------------------------------- Graph samples

_MAILBOX = {"name": "Harbour Home Loans", "address": "broker@harbour.example"}
_CLIENT_ADDRESS = {"name": "Linh Nguyen", "address": "linh.nguyen@example.com"}
_MESSAGE_ID = "AAMkAGI2TG93AAA-Linh-rate-question"

_MESSAGE: Final[dict[str, Any]] = {
    "id": _MESSAGE_ID,
    "subject": "Re: your refinance",
    "bodyPreview": "Hi, can we lock the rate before 30 June? Thanks, Linh",
    "from": _CLIENT_ADDRESS,
    "to": [_MAILBOX],
    "cc": [],
    "receivedDateTime": "2025-03-13T22:25:00Z",
    "sentDateTime": "2025-03-13T22:24:51Z",
    "hasAttachments": False,
    "importance": "normal",
    "isRead": False,
    "conversationId": "AAQkAGI2TG93-conversation",
    "webLink": "https://outlook.office365.com/owa/?ItemID=AAMkAGI2TG93AAA",
    "categories": [],
    "brokerhooksKey": None,
}

_CALENDAR_EVENT: Final[dict[str, Any]] = {
    "id": "AAMkAGI2TG93AAB-settlement",
    "subject": "Settlement call: Nguyen refinance",
    "bodyPreview": "Walk through the settlement figures.",
    "start": {"dateTime": "2025-04-11T10:00:00.0000000", "timeZone": "UTC"},
    "end": {"dateTime": "2025-04-11T11:00:00.0000000", "timeZone": "UTC"},
    "location": "Phone",
    "organizer": _MAILBOX,
    "attendees": [{**_CLIENT_ADDRESS, "type": "required", "response": "accepted"}],
    "isAllDay": False,
    "isCancelled": False,
    "webLink": "https://outlook.office365.com/owa/?itemid=AAMkAGI2TG93AAB",
    "categories": [],
    "changeKey": "DwAAABYAAAB8u3kmTkJ6Tp6Ucd0U9yNkAAAE1a7o",
}

_TASK: Final[dict[str, Any]] = {
    "id": "AAMkAGI2TG93AAC-valuation",
    "listId": "AAMkAGI2TG93AAD-deals",
    "title": "Order valuation: Nguyen - Refinance 12 Banksia St, Marrickville",
    "body": "Moved from 5. Submitted to 6. Approved.",
    "status": "completed",
    "importance": "normal",
    "dueDateTime": {"dateTime": "2025-03-16T00:00:00.0000000", "timeZone": "UTC"},
    "completedDateTime": {
        "dateTime": "2025-03-14T00:00:00.0000000",
        "timeZone": "UTC",
    },
    "createdDateTime": "2025-03-13T22:30:00Z",
    "lastModifiedDateTime": "2025-03-13T22:29:00Z",
    "categories": [],
    "linkedResources": [
        {
            "applicationName": "brokerhooks",
            "externalId": "0b7d3f9e-1c5a-4e8b-a2d6-9f4c1e7b3a58:stage-task:task",
            "webUrl": "https://hooks.example.com/events/0b7d3f9e",
            "displayName": "brokerhooks event 0b7d3f9e",
        }
    ],
}

_DRIVE_ITEM: Final[dict[str, Any]] = {
    "id": "01BYE5RZ6QN3ZWBTUFOFD3GSPGOHDJD36K",
    "name": "payslips.pdf",
    "path": "Clients/Nguyen/payslips.pdf",
    "webUrl": "https://harbour-my.sharepoint.com/personal/Documents/payslips.pdf",
    "size": 48213,
    "isFolder": False,
    "mimeType": "application/pdf",
    "createdDateTime": "2025-03-13T22:20:00Z",
    "lastModifiedDateTime": "2025-03-13T22:20:00Z",
    "deleted": False,
}

_GRAPH_SAMPLES: Final[Mapping[GraphSubject, dict[str, Any]]] = {
    "message": _MESSAGE,
    "calendar_event": _CALENDAR_EVENT,
    "task": _TASK,
    "drive_item": _DRIVE_ITEM,
}

# Every change, with the sample above as its `to` side.
_GRAPH_ALL_CHANGES: Final[Mapping[GraphSubject, dict[str, dict[str, Any]]]] = {
    "message": {
        "read": {"from": True, "to": False},
        "importance": {"from": "high", "to": "normal"},
        "categories": {"from": ["Clients"], "to": []},
        "subject": {"from": "your refinance", "to": _MESSAGE["subject"]},
    },
    "calendar_event": {
        "start": {
            "from": "2025-04-04T10:00:00.0000000",
            "to": "2025-04-11T10:00:00.0000000",
        },
        "end": {
            "from": "2025-04-04T11:00:00.0000000",
            "to": "2025-04-11T11:00:00.0000000",
        },
        "subject": {"from": "Settlement call", "to": _CALENDAR_EVENT["subject"]},
        "location": {"from": "Office", "to": "Phone"},
        "cancelled": {"from": True, "to": False},
    },
    "task": {
        "status": {"from": "notStarted", "to": "completed"},
        "title": {"from": "Order valuation", "to": _TASK["title"]},
        "due": {
            "from": "2025-03-15T00:00:00.0000000",
            "to": "2025-03-16T00:00:00.0000000",
        },
        "importance": {"from": "high", "to": "normal"},
    },
    "drive_item": {
        "name": {"from": "scan.pdf", "to": "payslips.pdf"},
        "path": {"from": "Clients/Nguyen/scan.pdf", "to": _DRIVE_ITEM["path"]},
        "size": {"from": 1024, "to": 48213},
    },
}

_GRAPH_TYPICAL_CHANGES: Final[Mapping[str, tuple[str, ...]]] = {
    "messageUpdated": ("read",),
    "eventUpdated": ("start", "end"),
    "taskUpdated": ("title",),
    "taskCompleted": ("status",),
    "driveItemChanged": ("size",),
}

# Where each change's `from` side goes in `previous`.
_GRAPH_PREVIOUS: Final[Mapping[str, Mapping[str, Any]]] = {
    "read": {"isRead": True},
    "start": {"start": {"dateTime": "2025-04-04T10:00:00.0000000", "timeZone": "UTC"}},
    "end": {"end": {"dateTime": "2025-04-04T11:00:00.0000000", "timeZone": "UTC"}},
    "title": {"title": "Order valuation"},
    "status": {"status": "notStarted", "completedDateTime": None},
    "size": {"size": 1024},
}

_GRAPH_FIRST_EVENTS: Final = frozenset(
    {"messageCreated", "eventCreated", "taskCreated"}
)


def _graph_sample(event_type: str, *, all_changes: bool) -> dict[str, Any]:
    """A realistic context for a Graph event type, matched to the sample deal."""
    subject = GRAPH_EVENT_SUBJECTS[event_type]
    data = copy.deepcopy(_GRAPH_SAMPLES[subject])
    if event_type == "taskUpdated":
        data["status"], data["completedDateTime"] = "inProgress", None
    if event_type == "driveItemDeleted":
        data["deleted"] = True
    changed = _GRAPH_TYPICAL_CHANGES.get(event_type, ())
    if all_changes:
        changed = tuple(_GRAPH_ALL_CHANGES[subject])
    first = event_type in _GRAPH_FIRST_EVENTS and not all_changes
    previous = copy.deepcopy(data)
    for name in changed:
        previous.update(copy.deepcopy(dict(_GRAPH_PREVIOUS.get(name, {}))))
    matched = subject != "drive_item"
    return {
        "event": {
            "id": "0b7d3f9e-1c5a-4e8b-a2d6-9f4c1e7b3a58",
            "type": event_type,
            "source": "msgraph",
            "entity_id": data["id"],
            "deal_id": _DEAL_ID if matched else None,
            "received_at": SAMPLE_NOW,
            "payload": {
                "subscription": "0195a7c2-6f1e-7b3a-9c4d-2e8f1a6b3c50",
                "notification": {
                    "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
                    "changeType": "created" if first else "updated",
                    "resource": f"Users/ann/Messages/{data['id']}",
                    "resourceData": {"id": data["id"]},
                },
            },
            "caused_by": None,
        },
        **{name: data if name == subject else None for name in _GRAPH_SAMPLES},
        "deal": copy.deepcopy(_DEAL) if matched else None,
        "contact": copy.deepcopy(_CONTACT) if matched else None,
        "note": None,
        "previous": None if first else previous,
        "changes": {}
        if first
        else {
            name: copy.deepcopy(_GRAPH_ALL_CHANGES[subject][name]) for name in changed
        },
        "broker": {
            "id": "d2f8b4a6-7e1c-4b9d-8a3f-5c0e6b2d9f14",
            "name": "Harbour Home Loans",
            "timezone": "Australia/Sydney",
        },
        "now": SAMPLE_NOW,
    }
