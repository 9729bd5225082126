"""Outlook: sendMail into an inspectable mailbox, and calendar events.

Sent mail is kept in ``Tenant.sent_mail`` for tests to read, and delivered
to the inbox of each recipient that is a mailbox of the tenant.

sendMail's 202 with no body, its parameter casings and
ErrorInvalidRecipients are documented; the defaults of a new event copy the
documented example response. Other behaviour is marked GUESS.
"""

from __future__ import annotations

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
    odata_context,
    recipients,
    require_method,
    require_recipients,
    string_value,
)
from brokerhooks.simulators.msgraph.mail import deliver_sent
from brokerhooks.simulators.msgraph.state import SentMail, Tenant, User

ATTENDEE_TYPES = ("required", "optional", "resource")
# The properties modelled here; a real tenant accepts every property of the
# type, and rejects unknown ones as this does.
EVENT_FIELDS = frozenset(
    {
        "subject",
        "body",
        "start",
        "end",
        "location",
        "locations",
        "attendees",
        "isAllDay",
        "isOnlineMeeting",
        "onlineMeetingProvider",
        "isReminderOn",
        "reminderMinutesBeforeStart",
        "categories",
        "showAs",
        "importance",
        "sensitivity",
        "responseRequested",
        "transactionId",
    }
)


def send_mail(tenant: Tenant, user: User, body: JSON) -> Answer:
    # Action parameters: the docs write message/saveToSentItems, the CSDL
    # and Microsoft's SDKs Message/SaveToSentItems; both are accepted [doc].
    parameters = {name.casefold(): value for name, value in body.items()}
    unknown = set(parameters) - {"message", "savetosentitems"}
    if unknown:
        raise GraphFault(
            400, "BadRequest", f"Unknown parameter(s) {sorted(unknown)} for sendMail."
        )
    message = parameters.get("message")
    if not isinstance(message, dict):
        raise GraphFault(400, "ErrorInvalidRequest", "The message is missing.")
    require_recipients(message)
    if "body" in message:
        message = {**message, "body": item_body(message["body"], "body")}
    save = parameters.get("savetosentitems", True)
    if save is None:
        save = True
    if not isinstance(save, bool):
        raise GraphFault(400, "BadRequest", "'saveToSentItems' must be a boolean.")
    tenant.sent_mail.append(
        SentMail(mailbox=user.upn, message=message, save_to_sent_items=save)
    )
    deliver_sent(tenant, user, message)
    return Answer(202)


def handle_events(tenant: Tenant, request: Request, user: User, body: bytes) -> Answer:
    if request.method == "GET":
        return collection(
            request,
            tenant,
            odata_context(request, user, "events"),
            list(user.events.values()),
        )
    require_method(request, "POST")
    fields = json_object(body)
    check_fields(fields, EVENT_FIELDS, "event")
    transaction_id = fields.get("transactionId")
    if transaction_id is not None:
        for existing in user.events.values():
            if existing.get("transactionId") == transaction_id:
                # GUESS: a repeated transactionId in the same mailbox answers
                # the first event, 201, and creates nothing (msgraph.md 2.3).
                return Answer(201, {**_context(request, user), **existing})
    if "start" not in fields or "end" not in fields:
        # GUESS: code and wording.
        raise GraphFault(
            400, "ErrorInvalidRequest", "An event needs both 'start' and 'end'."
        )
    event = _new_event(user)
    if transaction_id is not None:
        event["transactionId"] = string_value(transaction_id, "transactionId")
    _apply_event_fields(event, fields)
    user.events[event["id"]] = event
    return Answer(201, {**_context(request, user), **event})


def _context(request: Request, user: User) -> JSON:
    return {"@odata.context": odata_context(request, user, "events/$entity")}


def _new_event(user: User) -> JSON:
    """An event with the defaults Outlook gives one."""
    now = graph_timestamp()
    event_id = new_id("AAMkA")
    event: JSON = {
        "@odata.etag": new_etag(),
        "id": event_id,
        "createdDateTime": now,
        "lastModifiedDateTime": now,
        "changeKey": new_id(),
        "categories": [],
        "iCalUId": new_id("040000008200E00074C5B7101A82E008"),
        "reminderMinutesBeforeStart": 15,
        "isReminderOn": True,
        "hasAttachments": False,
        "subject": "",
        "importance": "normal",
        "sensitivity": "normal",
        "isAllDay": False,
        "isCancelled": False,
        "isOrganizer": True,
        "responseRequested": True,
        "showAs": "busy",
        "type": "singleInstance",
        "webLink": f"https://outlook.office365.com/owa/?itemid={event_id}",
        "isOnlineMeeting": False,
        "body": {"contentType": "html", "content": ""},
        "location": {"displayName": "", "locationType": "default"},
        "locations": [],
        "attendees": [],
        "organizer": {"emailAddress": {"name": user.display_name, "address": user.upn}},
    }
    return event


def handle_event(request: Request, user: User, event_id: str, body: bytes) -> Answer:
    event = user.events.get(event_id)
    if event is None:
        raise GraphFault(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    if request.method == "GET":
        return Answer(200, event)
    if request.method == "DELETE":
        del user.events[event_id]
        return Answer(204)
    require_method(request, "PATCH")
    changes = json_object(body)
    check_fields(changes, EVENT_FIELDS, "event")
    if "transactionId" in changes and changes["transactionId"] != event.get(
        "transactionId"
    ):
        # The docs say transactionId cannot change; the error is a GUESS.
        raise GraphFault(
            400, "ErrorInvalidPropertyUpdate", "transactionId cannot be changed."
        )
    _apply_event_fields(event, changes)
    event["lastModifiedDateTime"] = graph_timestamp()
    event["@odata.etag"] = new_etag()
    event["changeKey"] = new_id()
    return Answer(200, event)


def _apply_event_fields(event: JSON, fields: JSON) -> None:
    for name in ("start", "end"):
        if name in fields:
            event[name] = date_time_zone(fields[name], name)
    if "subject" in fields:
        event["subject"] = string_value(fields["subject"], "subject")
    if "body" in fields:
        event["body"] = item_body(fields["body"], "body")
    if "location" in fields:
        location = fields["location"]
        if not isinstance(location, dict):
            raise GraphFault(400, "BadRequest", "'location' must be an object.")
        event["location"] = {"locationType": "default", **location}
    if "attendees" in fields:
        attendees = fields["attendees"]
        recipients(attendees, "attendees")
        event["attendees"] = [
            {
                "type": enum_value(
                    attendee.get("type") or "required", ATTENDEE_TYPES, "type"
                ),
                "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
                "emailAddress": attendee["emailAddress"],
            }
            for attendee in attendees
        ]
    if "reminderMinutesBeforeStart" in fields:
        minutes = fields["reminderMinutesBeforeStart"]
        if not isinstance(minutes, int) or isinstance(minutes, bool):
            raise GraphFault(
                400, "BadRequest", "'reminderMinutesBeforeStart' must be an integer."
            )
        event["reminderMinutesBeforeStart"] = minutes
    for name in ("isReminderOn", "isAllDay", "isOnlineMeeting", "responseRequested"):
        if name in fields:
            if not isinstance(fields[name], bool):
                raise GraphFault(400, "BadRequest", f"'{name}' must be a boolean.")
            event[name] = fields[name]
    if "categories" in fields:
        event["categories"] = list(fields["categories"])
    if "importance" in fields:
        event["importance"] = enum_value(fields["importance"], IMPORTANCE, "importance")


def cancel_event(user: User, event_id: str, body: JSON) -> Answer:
    event = user.events.get(event_id)
    if event is None:
        raise GraphFault(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    parameters = {name.casefold(): value for name, value in body.items()}
    if set(parameters) - {"comment"}:
        raise GraphFault(400, "BadRequest", "cancel takes only 'Comment'.")
    # GUESS: Outlook moves a cancelled meeting out of the organiser's
    # calendar; the simulator keeps it, marked, so tests can see it.
    event["isCancelled"] = True
    event["cancellationComment"] = parameters.get("comment") or ""
    event["lastModifiedDateTime"] = graph_timestamp()
    event["@odata.etag"] = new_etag()
    event["changeKey"] = new_id()
    return Answer(202)
