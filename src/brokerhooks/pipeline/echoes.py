"""Echoes: events that brokerhooks' own actions caused.

A note a rule writes on a deal comes back as a ``noteCreated`` webhook; a
To Do task it makes, a calendar event it books or a mail it sends to a
watched mailbox comes back as a Microsoft Graph notification. Such an event
is an echo. Processing finds the action that made the item, and the chain
of rules that led to it, and gives both to the rules as
``event.caused_by``. A rule never runs on an event whose chain holds the
rule itself, so no rule can feed itself, alone or through other rules:
every rule in a chain is a different one, so every chain ends.

An echo is the event of the item's making (``noteCreated``,
``taskCreated``, ``eventCreated``, ``messageCreated``), or of a change an
action made to a calendar event it keeps in step (``eventUpdated``,
``eventDeleted``). What
people do later to such an item (completing the task, editing the note,
moving the event) is their own doing, not an echo.

How a made item is recognised:

- a To Do task by its linked resource, which names the action's key;
- a mail by its ``x-brokerhooks-key`` header;
- a SalesTrekker note or an Outlook calendar event by its id, which the
  ledger keeps as what the action made. A note's webhook can be processed
  before its action has saved that id (the action is still running, or its
  answer was lost and it waits to be retried): then the note is matched to
  such an action of the same deal by its text, which the action wrote;
- a calendar event's change by its ``changeKey``, Outlook's version of the
  event, which the action that moved it keeps: a person's later change
  gives another. Its cancelling or deletion, by the action of the same
  step that replaced it. A change processed while the step that keeps the
  event has an action in flight for the deal is taken for that action's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from brokerhooks.actions.todo_task import APPLICATION_NAME
from brokerhooks.store import processing, runs

# The event that tells of an item's making, by the subject it is about.
MAKING_EVENTS: dict[str, str] = {
    "noteCreated": "note",
    "taskCreated": "task",
    "eventCreated": "calendar_event",
    "messageCreated": "message",
}
# The events that tell of a change to an item an action keeps in step.
CHANGING_EVENTS: dict[str, str] = {
    "eventUpdated": "calendar_event",
    "eventDeleted": "calendar_event",
}
# The action kinds that make items of each subject.
_MAKERS: dict[str, tuple[str, ...]] = {
    "note": ("salestrekker_note",),
    "task": ("todo_task",),
    "calendar_event": ("calendar_event",),
    "message": ("send_mail",),
}


def cause_of(
    connection: Connection,
    *,
    broker_id: str,
    event_type: str,
    entity_id: str,
    data: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The action of the broker's that made the event's item, and its chain.

    None unless ``event_type`` tells of an item's making (or of a change
    to a calendar event) and one of the broker's actions made it.
    """
    if subject := MAKING_EVENTS.get(event_type):
        entry = _maker(connection, broker_id, subject, entity_id, data or {})
    elif subject := CHANGING_EVENTS.get(event_type):
        entry = _changer(
            connection,
            broker_id,
            subject,
            entity_id,
            data or {},
            deleted=event_type.endswith("Deleted"),
        )
    else:
        return None
    if entry is None:
        return None
    earlier = processing.caused_by(connection, entry.event_id) or {}
    rules = [entry.rule_id]
    rules.extend(rule for rule in earlier.get("rules") or [] if rule not in rules)
    return {
        "rule": entry.rule_id,
        "step": entry.step_id,
        "kind": entry.kind,
        "action": entry.key,
        "event": entry.event_id,
        "rules": rules,
    }


def _maker(
    connection: Connection,
    broker_id: str,
    subject: str,
    entity_id: str,
    data: Mapping[str, Any],
) -> runs.LedgerEntry | None:
    for key in _keys_in(subject, data):
        entry = runs.find_action(connection, key)
        if entry is not None and entry.broker_id == broker_id:
            return entry
    found = runs.find_made(connection, broker_id, entity_id, _MAKERS[subject])
    if found is None and subject == "note":
        return _note_in_flight(connection, broker_id, data)
    return found


def _changer(
    connection: Connection,
    broker_id: str,
    subject: str,
    entity_id: str,
    data: Mapping[str, Any],
    *,
    deleted: bool,
) -> runs.LedgerEntry | None:
    """The action that changed the item to what it is now.

    An update is known by its version: the action left the item with the
    ``changeKey`` it kept. A cancelling or a deletion is the doing of an
    action of the same step that replaced the item (its output names the
    item it withdrew). A change can also be processed before its action
    has saved what it did (the action is still running, or its answer was
    lost and it waits to be retried): then the change is taken for such an
    unfinished action of the step, for the same deal.
    """
    entries = runs.acted_on(connection, broker_id, entity_id, _MAKERS[subject])
    if not entries:
        return None
    version = data.get("changeKey")
    if not deleted and isinstance(version, str) and version:
        for entry in entries:
            if (entry.output or {}).get("change_key") == version:
                return entry
    maker = entries[-1]
    if maker.deal_id is None:
        return None
    step = runs.of_step(
        connection, broker_id, maker.deal_id, maker.rule_id, maker.step_id
    )
    if data.get("isCancelled") is True or deleted:
        for entry in step:
            if (entry.output or {}).get("replaced") == entity_id:
                return entry
    return next((entry for entry in step if runs.in_flight(entry)), None)


def _note_in_flight(
    connection: Connection, broker_id: str, note: Mapping[str, Any]
) -> runs.LedgerEntry | None:
    """A note action of the note's deal, unfinished, that wrote this text."""
    deal_id, content = note.get("idTicket"), note.get("content")
    if not isinstance(deal_id, str) or not isinstance(content, str):
        return None
    for entry in runs.unrecorded(connection, broker_id, deal_id, "salestrekker_note"):
        if entry.params.get("content") == content:
            return entry
    return None


def _keys_in(subject: str, data: Mapping[str, Any]) -> list[str]:
    """Action keys the item carries: a task's links, a mail's header."""
    if subject == "task":
        return [
            str(link["externalId"])
            for link in data.get("linkedResources") or []
            if isinstance(link, Mapping)
            and link.get("applicationName") == APPLICATION_NAME
            and link.get("externalId")
        ]
    if subject == "message" and data.get("brokerhooksKey"):
        return [str(data["brokerhooksKey"])]
    return []
