"""The inbox: mail that arrives, read through ``/messages``, and its delta.

Message fields copy the documented message resource. Only the inbox is
modelled: ``/messages`` and ``/mailFolders('inbox')/messages`` are the same
collection here (in Graph the first spans every folder). Ids are long, as
Outlook's are (about 150 characters). GUESS: error codes other than the
documented 404 ``ErrorItemNotFound``.
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
    json_object,
    new_etag,
    odata_context,
)
from brokerhooks.simulators.msgraph.state import Tenant, User

INBOX = "inbox"
INBOX_FOLDER_ID = "AQMkAGI2TG93AAAuAAADinboxAAA="
_UPDATABLE = frozenset({"isRead", "categories", "importance", "flag"})
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
) -> JSON:
    """A message as it lands in ``user``'s inbox."""
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
        "body": {"contentType": "text", "content": body},
        "sender": who,
        "from": who,
        "toRecipients": [
            {"emailAddress": {"name": user.display_name, "address": user.upn}}
        ],
        "ccRecipients": [{"emailAddress": {"address": a}} for a in cc or []],
        "bccRecipients": [],
        "replyTo": [],
        "categories": [],
        "flag": {"flagStatus": "notFlagged"},
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
        return Answer(200, message)
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
