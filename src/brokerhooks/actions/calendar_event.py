"""``calendar_event``: one Outlook event per deal and step, kept in step.

A new event is created with a ``transactionId`` derived from the action's
key: Graph makes no second event for a transactionId it has seen, so a
retry returns the first one.

When the same rule and step already made an event for the deal
(``ctx.prior``), that event is kept in step instead of adding another:

- ``on_date_change: update`` moves it (start, end, subject, body);
- ``on_date_change: cancel`` cancels it (attendees are told; an event
  without attendees is deleted) and creates a new one, when the dates
  changed; when they did not, it is updated like ``update``.

A prior event that no longer exists (deleted in Outlook) gives way to a new
one. The output says what was done: ``created`` (no prior event, or it was
gone), ``updated`` or ``replaced`` (cancelled and created anew; ``replaced``
also names the withdrawn event's id).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from brokerhooks.actions.base import ActionContext, ActionResult, PriorAction
from brokerhooks.actions.send_mail import addresses
from brokerhooks.actions.support import graph, moment, read_params
from brokerhooks.connectors.errors import PermanentError
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.connectors.msgraph.errors import GraphNotFound
from brokerhooks.connectors.msgraph.resources import JSON, EventFields
from brokerhooks.rules.model import CalendarEventParams

# Outlook's length for a new event when the rule gives no end or duration.
DEFAULT_DURATION = timedelta(minutes=30)
_TRANSACTION_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "brokerhooks:calendar_event")


class CalendarEvent:
    name: ClassVar[str] = "calendar_event"
    why: ClassVar[str] = (
        "the event is created with a transactionId derived from the action's "
        "key, and Graph makes no second event for a transactionId; a changed "
        "date moves (or replaces) the deal's event instead of adding one"
    )
    guarantee: ClassVar[str] = "exactly-once"

    async def perform(self, ctx: ActionContext) -> ActionResult:
        params = read_params(ctx, CalendarEventParams)
        fields = event_fields(params)
        prior = ctx.prior if ctx.prior and ctx.prior.remote_id else None

        async with graph(ctx) as client:
            done, replaced = "created", None
            if prior is not None:
                if params.on_date_change == "update" or same_dates(prior, fields):
                    event = await update(client, str(prior.remote_id), fields)
                    if event is not None:
                        return result(event, fields, "updated")
                elif await withdraw(client, prior):
                    done, replaced = "replaced", str(prior.remote_id)

            event = await create(client, fields, ctx.key)
        return result(event, fields, done, replaced=replaced)


def event_fields(params: CalendarEventParams) -> EventFields:
    start = moment(params.start, "start")
    assert start is not None  # a required param
    end = moment(params.end, "end") or start + (params.duration or DEFAULT_DURATION)
    if end < start:
        raise PermanentError(
            f"params.end: the event would end ({end.isoformat()}) before it "
            f"starts ({start.isoformat()})"
        )
    return EventFields(
        subject=params.subject,
        html_body=params.body,
        start=start,
        end=end,
        location=params.location,
        attendees=addresses(params.attendees) or None,
    )


def transaction_id(key: str) -> str:
    """The transactionId of the event an action key creates, the same each attempt."""
    return str(uuid.uuid5(_TRANSACTION_NAMESPACE, key))


async def create(client: GraphClient, fields: EventFields, key: str) -> JSON:
    return await client.create_event(fields, transaction_id=transaction_id(key))


async def update(
    client: GraphClient, event_id: str, fields: EventFields
) -> JSON | None:
    """Move the event to the new dates and text; None if it is gone."""
    changes = EventFields(
        subject=fields.subject,
        html_body=fields.html_body,
        start=fields.start,
        end=fields.end,
    )
    try:
        return await client.update_event(event_id, changes)
    except GraphNotFound:
        return None


async def withdraw(client: GraphClient, prior: PriorAction) -> bool:
    """Cancel the prior event, or delete it if nobody was invited.

    False if it was gone already.
    """
    event_id = str(prior.remote_id)
    try:
        if prior.output.get("attendees"):
            await client.cancel_event(
                event_id, comment="This event was moved to a new date."
            )
        else:
            await client.delete_event(event_id)
    except GraphNotFound:
        return False
    return True


def same_dates(prior: PriorAction, fields: EventFields) -> bool:
    return (_when(prior.output, "start"), _when(prior.output, "end")) == (
        fields.start,
        fields.end,
    )


def result(
    event: JSON, fields: EventFields, done: str, *, replaced: str | None = None
) -> ActionResult:
    """What the step made or changed; ``replaced``: the event it withdrew."""
    assert fields.start is not None
    assert fields.end is not None
    return ActionResult(
        remote_id=str(event["id"]),
        output={
            "done": done,
            "start": fields.start.isoformat(),
            "end": fields.end.isoformat(),
            "subject": fields.subject,
            "attendees": list(fields.attendees or []),
            "web_link": event.get("webLink"),
            # Outlook's version of the event as this action left it: a
            # notification of the change it made carries the same one.
            "change_key": event.get("changeKey"),
            **({"replaced": replaced} if replaced else {}),
        },
    )


def _when(output: Mapping[str, Any], name: str) -> datetime | None:
    value = output.get(name)
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
