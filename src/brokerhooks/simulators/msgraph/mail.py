"""The inbox: mail that arrives, read through ``/messages``, and its delta;
drafts made with ``POST /messages`` and sent with ``POST /messages/{id}/send``.

Message fields copy the documented message resource. The inbox is the
folder modelled in full: ``/messages`` and ``/mailFolders('inbox')/messages``
list the same collection here (in Graph the first spans every folder).
Drafts and Sent Items exist only to be read one message at a time
(``GET /messages/{id}``). Ids are long, as Outlook's are (about 150
characters). GUESS: error codes other than the documented 404
``ErrorItemNotFound``.

Drafts (Graph's documented way to send mail in two steps; the reference
names it as an option, without the endpoints' details): ``POST /messages``
answers 201 with the draft, ``isDraft`` true; ``POST /messages/{id}/send``
answers 202 with no body, hands the message to ``sent_mail`` and moves it to
Sent Items with ``isDraft`` false. A sent message keeps its id here, as Graph
keeps it for a client that asks for immutable ids (``Prefer:
IdType="ImmutableId"``, which the client sends). GUESS: sending a message
that is not a draft answers 400 ``ErrorInvalidRequest``.

Mail sent to a mailbox of the tenant, by either way or by ``sendMail``,
arrives in that mailbox's inbox as a new message (``deliver_sent``).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime

from starlette.requests import Request

from brokerhooks.simulators.msgraph import subscriptions
from brokerhooks.simulators.msgraph.common import (
    JSON,
    Answer,
    GraphFault,
    graph_timestamp,
)
from brokerhooks.simulators.msgraph.fields import (
    check_fields,
    collection,
    item_body,
    json_object,
    new_etag,
    odata_context,
    recipients,
    require_recipients,
)
from brokerhooks.simulators.msgraph.state import SentMail, Tenant, User, addresses

INBOX = "inbox"
INBOX_FOLDER_ID = "AQMkAGI2TG93AAAuAAADinboxAAA="
DRAFTS_FOLDER_ID = "AQMkAGI2TG93AAAuAAADdraftsAAA="
SENT_ITEMS_FOLDER_ID = "AQMkAGI2TG93AAAuAAADsentitemsAAA="
_UPDATABLE = frozenset({"isRead", "categories", "importance", "flag"})
# What a draft may be made with (the message resource has more).
_DRAFT_FIELDS = frozenset(
    {
        "subject",
        "body",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "importance",
        "internetMessageHeaders",
        "categories",
    }
)
_REMOVED: JSON = {
    "@odata.type": "#microsoft.graph.message",
    "@removed": {"reason": "deleted"},
}


def message_id() -> str:
    """An id shaped like Outlook's: ``AAMkAG`` and about 150 characters."""
    return "AAMkAG" + base64.urlsafe_b64encode(secrets.token_bytes(108)).decode()


def new_message(
    user: User,
    *,
    sender: str,
    sender_name: str | None,
    subject: str,
    body: str,
    cc: list[str] | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "text",
    to: list[JSON] | None = None,
) -> JSON:
    """A message as it lands in ``user``'s inbox.

    ``headers`` are its own internet headers (``x-...``), which Graph returns
    only when ``$select`` names ``internetMessageHeaders``. ``to``: the
    message's recipients as the sender wrote them (by default, ``user``).
    """
    now = graph_timestamp()
    identifier = message_id()
    who = {"emailAddress": {"name": sender_name or sender, "address": sender}}
    return {
        "@odata.etag": new_etag(),
        "id": identifier,
        "createdDateTime": now,
        "lastModifiedDateTime": now,
        "receivedDateTime": now,
        "sentDateTime": graph_timestamp(datetime.now(UTC)),
        "hasAttachments": False,
        "internetMessageId": f"<{uuid.uuid4().hex}@{sender.rpartition('@')[2]}>",
        "subject": subject,
        "bodyPreview": " ".join(body.split())[:255],
        "importance": "normal",
        "parentFolderId": INBOX_FOLDER_ID,
        "conversationId": "AAQkAG"
        + base64.urlsafe_b64encode(secrets.token_bytes(30)).decode(),
        "isRead": False,
        "isDraft": False,
        "webLink": f"https://outlook.office365.com/owa/?ItemID={identifier}",
        "body": {"contentType": content_type, "content": body},
        "sender": who,
        "from": who,
        "toRecipients": to
        or [{"emailAddress": {"name": user.display_name, "address": user.upn}}],
        "ccRecipients": [{"emailAddress": {"address": a}} for a in cc or []],
        "bccRecipients": [],
        "replyTo": [],
        "categories": [],
        "flag": {"flagStatus": "notFlagged"},
        **(
            {
                "internetMessageHeaders": [
                    {"name": name, "value": value} for name, value in headers.items()
                ]
            }
            if headers
            else {}
        ),
    }


def handle_messages(
    tenant: Tenant, request: Request, user: User, segments: list[str], body: bytes
) -> Answer:
    """``messages``, ``messages/{id}`` and ``messages/delta``."""
    if segments == []:
        if request.method != "GET":
            raise GraphFault(405, "BadRequest", "Mail is not created here.")
        return collection(
            request,
            tenant,
            odata_context(request, user, "messages"),
            list(user.messages.values()),
        )
    if segments == ["delta"]:
        return subscriptions.delta(
            tenant, request, user, INBOX, dict(user.messages), _REMOVED
        )
    if len(segments) != 1:
        raise GraphFault(400, "BadRequest", "Resource not found for the segment.")
    message = user.messages.get(segments[0])
    if message is None:
        raise GraphFault(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    if request.method == "GET":
        return Answer(200, selected(request, message))
    if request.method == "DELETE":
        del user.messages[segments[0]]
        subscriptions.record_change(tenant, user, INBOX, segments[0], "deleted")
        return Answer(204)
    if request.method != "PATCH":
        raise GraphFault(
            405, "BadRequest", f"The {request.method} method is not allowed."
        )
    changes = json_object(body)
    check_fields(changes, _UPDATABLE, "message")
    message.update(changes)
    message["@odata.etag"] = new_etag()
    message["lastModifiedDateTime"] = graph_timestamp()
    subscriptions.record_change(
        tenant, user, INBOX, message["id"], "updated", etag=message["@odata.etag"]
    )
    return Answer(200, message)


def selected(request: Request, message: JSON) -> JSON:
    """The fields of ``message`` that ``$select`` names, with its id and etag.

    Without ``$select``, every field but ``internetMessageHeaders``, which
    Graph returns only when asked for by name. Names match in any case.
    """
    select = request.query_params.get("$select")
    if not select:
        return {k: v for k, v in message.items() if k != "internetMessageHeaders"}
    names = {name.strip().casefold() for name in select.split(",")}
    names.update(("id", "@odata.etag"))
    return {k: v for k, v in message.items() if k.casefold() in names}


def inbox_segments(raw: list[str]) -> list[str] | None:
    """What follows the inbox in a path, or None if the path is not mail.

    ``messages/...``, ``mailFolders('inbox')/messages/...`` and
    ``mailFolders/inbox/messages/...`` all name the inbox here.
    """
    folded = [segment.casefold().replace("'", "").replace('"', "") for segment in raw]
    if folded[:1] == ["messages"]:
        return raw[1:]
    if folded[:2] == ["mailfolders(inbox)", "messages"]:
        return raw[2:]
    if folded[:3] == ["mailfolders", "inbox", "messages"]:
        return raw[3:]
    return None


def handle_all_messages(
    tenant: Tenant, request: Request, user: User, segments: list[str], body: bytes
) -> Answer:
    """``/messages``: the inbox's routes, plus drafts and Sent Items."""
    if segments == [] and request.method == "POST":
        return _create_draft(user, json_object(body))
    if len(segments) == 2 and segments[1].casefold() == "send":
        if request.method != "POST":
            raise GraphFault(
                405, "BadRequest", f"The {request.method} method is not allowed."
            )
        return _send_draft(tenant, user, segments[0])
    if len(segments) == 1 and segments[0] not in user.messages:
        found = user.drafts.get(segments[0]) or user.sent_items.get(segments[0])
        if found is not None and request.method == "GET":
            return Answer(200, found)
        if segments[0] in user.drafts and request.method == "DELETE":
            del user.drafts[segments[0]]
            return Answer(204)
    return handle_messages(tenant, request, user, segments, body)


def _create_draft(user: User, fields: JSON) -> Answer:
    check_fields(fields, _DRAFT_FIELDS, "message")
    for key in ("toRecipients", "ccRecipients", "bccRecipients", "replyTo"):
        recipients(fields.get(key), key)
    now = graph_timestamp()
    identifier = message_id()
    me = {"emailAddress": {"name": user.display_name, "address": user.upn}}
    draft: JSON = {
        "@odata.etag": new_etag(),
        "id": identifier,
        "createdDateTime": now,
        "lastModifiedDateTime": now,
        "hasAttachments": False,
        "internetMessageId": f"<{uuid.uuid4().hex}@{user.upn.rpartition('@')[2]}>",
        "subject": fields.get("subject") or "",
        "importance": fields.get("importance", "normal"),
        "parentFolderId": DRAFTS_FOLDER_ID,
        "isRead": True,
        "isDraft": True,
        "webLink": f"https://outlook.office365.com/owa/?ItemID={identifier}",
        "body": item_body(
            fields.get("body", {"contentType": "text", "content": ""}), "body"
        ),
        "sender": me,
        "from": me,
        "toRecipients": fields.get("toRecipients") or [],
        "ccRecipients": fields.get("ccRecipients") or [],
        "bccRecipients": fields.get("bccRecipients") or [],
        "replyTo": fields.get("replyTo") or [],
        "categories": fields.get("categories") or [],
        "flag": {"flagStatus": "notFlagged"},
    }
    if "internetMessageHeaders" in fields:
        draft["internetMessageHeaders"] = fields["internetMessageHeaders"]
    user.drafts[identifier] = draft
    return Answer(201, draft)


def _send_draft(tenant: Tenant, user: User, identifier: str) -> Answer:
    draft = user.drafts.get(identifier)
    if draft is None:
        if identifier in user.sent_items or identifier in user.messages:
            raise GraphFault(
                400, "ErrorInvalidRequest", "Only a draft message can be sent."
            )
        raise GraphFault(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    require_recipients(draft)
    del user.drafts[identifier]
    now = graph_timestamp()
    sent = {
        **draft,
        "@odata.etag": new_etag(),
        "isDraft": False,
        "parentFolderId": SENT_ITEMS_FOLDER_ID,
        "sentDateTime": now,
        "lastModifiedDateTime": now,
    }
    user.sent_items[identifier] = sent
    message: JSON = {
        key: sent[key]
        for key in (
            "subject",
            "body",
            "toRecipients",
            "ccRecipients",
            "bccRecipients",
            "internetMessageHeaders",
        )
        if key in sent
    }
    tenant.sent_mail.append(
        SentMail(mailbox=user.upn, message=message, save_to_sent_items=True)
    )
    deliver_sent(tenant, user, message)
    return Answer(202)


def deliver_sent(tenant: Tenant, sender: User, message: JSON) -> None:
    """Put a sent message in the inbox of each of its recipients in the tenant.

    Exchange delivers mail between the tenant's own mailboxes, the sender's
    included when it writes to itself; addresses outside the tenant lead
    nowhere here. Each copy is a new inbox message, with its own id, that
    keeps the sent message's subject, body, recipients and internet headers,
    and is notified as ``created``. Called under ``tenant.lock``. GUESS: the
    copy lands at once; Exchange takes a moment.
    """
    body = message.get("body") or {}
    headers = {
        str(header["name"]): str(header["value"])
        for header in message.get("internetMessageHeaders") or []
        if isinstance(header, dict) and "name" in header and "value" in header
    }
    delivered: set[str] = set()
    for key in ("toRecipients", "ccRecipients", "bccRecipients"):
        for address in addresses(message, key):
            user = tenant.find_user(address)
            if user is None or user.id in delivered:
                continue
            delivered.add(user.id)
            copy = new_message(
                user,
                sender=sender.upn,
                sender_name=sender.display_name,
                subject=str(message.get("subject") or ""),
                body=str(body.get("content") or ""),
                content_type=str(body.get("contentType") or "text").lower(),
                cc=addresses(message, "ccRecipients"),
                headers=headers or None,
                to=list(message.get("toRecipients") or []),
            )
            user.messages[copy["id"]] = copy
            subscriptions.record_change(
                tenant, user, INBOX, copy["id"], "created", etag=copy["@odata.etag"]
            )
