"""Reading request bodies and writing answers, as Graph does.

Graph reads enum values case-insensitively and answers canonical ones; it
rejects properties a type does not have. Collections page with
``@odata.nextLink`` when the simulator's ``page_size`` is set.

GUESS: the error codes and wording for malformed bodies; that they are 400s
is documented.
"""

from __future__ import annotations

import json
from datetime import datetime

from starlette.requests import Request

from brokerhooks.simulators.msgraph.common import JSON, Answer, GraphFault, new_id
from brokerhooks.simulators.msgraph.state import Tenant, User

IMPORTANCE = ("low", "normal", "high")
BODY_TYPES = ("text", "html")


def require_method(request: Request, method: str) -> None:
    if request.method != method:
        raise method_not_allowed(request)


def json_object(body: bytes) -> JSON:
    if not body:
        raise GraphFault(400, "BadRequest", "Empty Payload. JSON content expected.")
    try:
        value = json.loads(body)
    except ValueError:
        raise GraphFault(
            400, "BadRequest", "Unable to read JSON request payload."
        ) from None
    if not isinstance(value, dict):
        raise GraphFault(400, "BadRequest", "A JSON object is expected.")
    return value


def no_segment(segment: str) -> GraphFault:
    return GraphFault(
        400, "BadRequest", f"Resource not found for the segment '{segment}'."
    )


def method_not_allowed(request: Request) -> GraphFault:
    # GUESS: code and wording.
    return GraphFault(
        405, "BadRequest", f"The {request.method} method is not allowed here."
    )


def odata_context(request: Request, user: User, path: str) -> str:
    base = str(request.base_url).rstrip("/")
    return f"{base}/v1.0/$metadata#users('{user.id}')/{path}"


def collection(
    request: Request, tenant: Tenant, context: str, items: list[JSON]
) -> Answer:
    size = tenant.page_size or len(items) or 1
    offset = int(request.query_params.get("$skiptoken", "0") or 0)
    body: JSON = {"@odata.context": context, "value": items[offset : offset + size]}
    if offset + size < len(items):
        body["@odata.nextLink"] = str(
            request.url.include_query_params(**{"$skiptoken": offset + size})
        )
    return Answer(200, body)


def new_etag() -> str:
    return f'W/"{new_id()}"'


def check_fields(value: JSON, allowed: frozenset[str], type_name: str) -> None:
    for name in value:
        if name.startswith("@"):
            continue
        if name not in allowed:
            raise GraphFault(
                400,
                "BadRequest",
                f"The property '{name}' does not exist on type "
                f"'microsoft.graph.{type_name}'.",
            )


def enum_value(value: object, allowed: tuple[str, ...], name: str) -> str:
    # Graph reads enum values case-insensitively and answers canonical ones.
    if isinstance(value, str):
        for option in allowed:
            if option.casefold() == value.casefold():
                return option
    raise GraphFault(400, "BadRequest", f"Invalid value {value!r} for '{name}'.")


def string_value(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise GraphFault(400, "BadRequest", f"'{name}' must be a string.")
    return value


def date_time_zone(value: object, name: str) -> JSON:
    if not isinstance(value, dict) or not isinstance(value.get("dateTime"), str):
        raise GraphFault(400, "BadRequest", f"'{name}' must be {{dateTime, timeZone}}.")
    try:
        moment = datetime.fromisoformat(value["dateTime"].rstrip("Z")[:26])
    except ValueError:
        raise GraphFault(
            400, "BadRequest", f"'{name}.dateTime' is not a date and time."
        ) from None
    # Graph answers seven fractional digits and the time zone it was given.
    return {
        "dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0",
        "timeZone": string_value(value.get("timeZone") or "UTC", f"{name}.timeZone"),
    }


def item_body(value: object, name: str) -> JSON:
    if not isinstance(value, dict):
        raise GraphFault(
            400, "BadRequest", f"'{name}' must be {{content, contentType}}."
        )
    return {
        "content": string_value(value.get("content") or "", f"{name}.content"),
        "contentType": enum_value(value.get("contentType") or "text", BODY_TYPES, name),
    }


def require_recipients(message: JSON) -> None:
    """Check every recipient list of a message to send; one address at least."""
    everyone = [
        recipient
        for key in ("toRecipients", "ccRecipients", "bccRecipients")
        for recipient in recipients(message.get(key), key)
    ]
    if not everyone:
        raise GraphFault(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient is required, but none were found.",
        )


def recipients(value: object, name: str) -> list[JSON]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise GraphFault(400, "BadRequest", f"'{name}' must be an array.")
    for recipient in value:
        address = (
            recipient.get("emailAddress", {}) if isinstance(recipient, dict) else {}
        )
        if not isinstance(address, dict) or "@" not in str(address.get("address", "")):
            raise GraphFault(
                400,
                "ErrorInvalidRecipients",
                f"A recipient in '{name}' has no valid email address.",
            )
    return value
