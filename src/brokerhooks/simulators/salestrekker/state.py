"""The simulator's data, and the rules by which a change becomes webhooks.

Records are plain dicts shaped like the bundled schema's types (camelCase
keys), so GraphQL resolves them as they are. Every change goes through one
method here, which checks it, applies it and answers the webhooks it causes.

Which webhooks a deal change sends (GUESS: SalesTrekker documents no rule):
one per kind of change, in this order, and none when nothing changed.

==========================================  ============================
fields changed                              webhook
==========================================  ============================
idWorkflow                                  dealChangesWorkflow
idStage                                     dealChangesStage
idOwner                                     dealChangesOwner
dueDate                                     dealChangesDueDate
isWon isLost isSettled isInProgress         dealChangesStatus
isActive wonTimeStamp lostTimeStamp
anything else (name, values, clients, ...)  dealUpdated
==========================================  ============================

A move to another workflow changes the stage too, so it sends both
dealChangesWorkflow and dealChangesStage.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from brokerhooks.simulators.salestrekker import seed
from brokerhooks.simulators.salestrekker.webhooks import (
    CONTACT_CREATED,
    CONTACT_UPDATED,
    DEAL_CHANGES_ATTACHMENTS,
    DEAL_CHANGES_DUE_DATE,
    DEAL_CHANGES_OWNER,
    DEAL_CHANGES_REQUIRED_DOCUMENTS,
    DEAL_CHANGES_STAGE,
    DEAL_CHANGES_STATUS,
    DEAL_CHANGES_WORKFLOW,
    DEAL_CREATED,
    DEAL_UPDATED,
    NOTE_CREATED,
    NOTE_UPDATED,
    Webhook,
)

Record = dict[str, Any]

TICKET_EVENTS = {
    "idWorkflow": DEAL_CHANGES_WORKFLOW,
    "idStage": DEAL_CHANGES_STAGE,
    "idOwner": DEAL_CHANGES_OWNER,
    "dueDate": DEAL_CHANGES_DUE_DATE,
    "isWon": DEAL_CHANGES_STATUS,
    "isLost": DEAL_CHANGES_STATUS,
    "isSettled": DEAL_CHANGES_STATUS,
    "isInProgress": DEAL_CHANGES_STATUS,
    "isActive": DEAL_CHANGES_STATUS,
    "wonTimeStamp": DEAL_CHANGES_STATUS,
    "lostTimeStamp": DEAL_CHANGES_STATUS,
}
TICKET_EVENT_ORDER = (
    DEAL_CHANGES_WORKFLOW,
    DEAL_CHANGES_STAGE,
    DEAL_CHANGES_OWNER,
    DEAL_CHANGES_DUE_DATE,
    DEAL_CHANGES_STATUS,
    DEAL_UPDATED,
)
# The TicketInput fields of the bundled schema: what a change may set.
TICKET_FIELDS = frozenset(
    {
        "idOwner",
        "idWorkflow",
        "idStage",
        "idClients",
        "idContacts",
        "idLabels",
        "isActive",
        "name",
        "description",
        "values",
        "ticketClientTypes",
        "isWon",
        "isLost",
        "isSettled",
        "isInProgress",
        "wonTimeStamp",
        "lostTimeStamp",
        "assets",
        "liabilities",
        "expenses",
        "dueDate",
    }
)


class SimulatorError(Exception):
    """A change the simulator refuses; the message says why."""


class UnknownRecord(SimulatorError):
    """The deal, contact, note, stage or user named does not exist."""


def now_ms() -> int:
    """Epoch milliseconds: the unit of SalesTrekker timestamps (GUESS)."""
    return int(time.time() * 1000)


def new_id() -> str:
    return str(uuid.uuid4())


class SimulatorState:
    """Users, workflows, labels, contacts, deals and notes of one organisation."""

    def __init__(self, *, clock: Callable[[], int] = now_ms) -> None:
        self.clock = clock
        self.organisation: Record = {
            "id": seed.ORGANISATION_ID,
            "name": seed.ORGANISATION_NAME,
        }
        self.users: dict[str, Record] = {}
        self.workflows: dict[str, Record] = {}
        self.labels: dict[str, Record] = {}
        self.contacts: dict[str, Record] = {}
        self.tickets: dict[str, Record] = {}
        self.notes: dict[str, Record] = {}
        # Not readable through the known API; kept so that the matching
        # webhooks have something behind them.
        self.attachments: dict[str, list[str]] = {}
        self.required_documents: dict[str, list[str]] = {}
        self._next_ref = 1001

    # -- seed ----------------------------------------------------------------

    def seed(self) -> None:
        """Fill in the demo organisation (see ``seed``); sends no webhooks."""
        for user_id, (name, email) in seed.USERS.items():
            self.users[user_id] = {"id": user_id, "name": name, "email": email}
        for workflow_id, (name, stages) in seed.WORKFLOWS.items():
            self.add_workflow(workflow_id, name, stages)
        for label_name, label_id in seed.LABEL_IDS.items():
            self.labels[label_id] = {"id": label_id, "name": label_name}

        client = [seed.LABEL_IDS["Client"]]
        self.create_contact(
            _person("Jane", "Citizen", "jane.citizen@example.com", "0412 345 678"),
            owner_id=seed.OWNER_ID,
            contact_id=seed.JANE_ID,
            labels=client,
        )
        self.create_contact(
            _person("Raj", "Patel", "raj.patel@example.com", "0423 456 789"),
            owner_id=seed.ASSISTANT_ID,
            contact_id=seed.RAJ_ID,
            labels=client,
        )
        self.create_ticket(
            {
                "name": seed.DEAL_NAME,
                "description": "Purchase of an owner-occupied home",
                "idWorkflow": seed.HOME_LOAN_WORKFLOW_ID,
                "idStage": seed.HOME_LOAN_STAGE_IDS["2. Fact Find"],
                "idClients": [seed.JANE_ID],
                "idLabels": [seed.LABEL_IDS["Hot lead"]],
                "values": {"onceOff": 650000.0},
                "ticketClientTypes": [{"idContact": seed.JANE_ID, "idLabel": None}],
            },
            owner_id=seed.OWNER_ID,
            ticket_id=seed.DEAL_ID,
        )
        self.create_note(
            {"idTicket": seed.DEAL_ID, "content": "First call: pre-approval wanted"},
            owner_id=seed.OWNER_ID,
            note_id=seed.NOTE_ID,
        )

    def add_workflow(
        self, workflow_id: str, name: str, stage_names: Iterable[str]
    ) -> Record:
        stamp = self.clock()
        workflow = {
            "id": workflow_id,
            "name": name,
            "isProject": False,
            "description": None,
            "timeStamp": stamp,
            "type": {"name": "deal"},  # GUESS: the values of Workflow.type
            "stages": [
                {
                    "id": seed.stage_id(workflow_id, stage),
                    "name": stage,
                    "timestamp": stamp,
                }
                for stage in stage_names
            ],
        }
        self.workflows[workflow_id] = workflow
        return workflow

    # -- lookups -------------------------------------------------------------

    def ticket(self, ticket_id: str) -> Record:
        return _get(self.tickets, ticket_id, "deal")

    def contact(self, contact_id: str) -> Record:
        return _get(self.contacts, contact_id, "contact")

    def note(self, note_id: str) -> Record:
        return _get(self.notes, note_id, "note")

    def stage_id(self, stage_name: str, workflow_id: str | None = None) -> str:
        """The id of the stage called ``stage_name`` (case-insensitive).

        Looks in ``workflow_id``, or in every workflow if None.
        """
        workflows = (
            [_get(self.workflows, workflow_id, "workflow")]
            if workflow_id
            else list(self.workflows.values())
        )
        wanted = stage_name.strip().casefold()
        for workflow in workflows:
            for stage in workflow["stages"]:
                if stage["name"].casefold() == wanted:
                    return str(stage["id"])
        raise UnknownRecord(f"no stage named {stage_name!r}")

    def workflow_of_stage(self, stage_id: str) -> str:
        for workflow in self.workflows.values():
            if any(stage["id"] == stage_id for stage in workflow["stages"]):
                return str(workflow["id"])
        raise UnknownRecord(f"no stage with id {stage_id}")

    def user_id(self, name_or_id: str) -> str:
        """A user's id from their id or name (case-insensitive)."""
        if name_or_id in self.users:
            return name_or_id
        for user in self.users.values():
            if user["name"].casefold() == name_or_id.strip().casefold():
                return str(user["id"])
        raise UnknownRecord(f"no user {name_or_id!r}")

    def label_id(self, name: str) -> str:
        for label in self.labels.values():
            if label["name"].casefold() == name.strip().casefold():
                return str(label["id"])
        raise UnknownRecord(f"no label named {name!r}")

    # -- deals ---------------------------------------------------------------

    def create_ticket(
        self,
        fields: Mapping[str, Any],
        *,
        owner_id: str,
        ticket_id: str | None = None,
    ) -> tuple[str, list[Webhook]]:
        """Create a deal from TicketInput fields; answer its id and webhooks.

        Without a workflow the deal goes to the first workflow; without a
        stage, to the workflow's first stage (GUESS).
        """
        _check_fields(fields)
        ticket_id = ticket_id or new_id()
        ticket: Record = {
            "id": ticket_id,
            "uuid": new_id(),
            "ref": f"ST-{self._next_ref}",
            "idOwner": owner_id,
            "isActive": True,
            "timeStamp": self.clock(),
            "idWorkflow": None,
            "idStage": None,
            "idClients": [],
            "idLabels": [],
            "idContacts": None,
            "name": None,
            "description": None,
            "values": {"onceOff": None},
            "ticketClientTypes": [],
            "assets": [],
            "liabilities": [],
            "expenses": [],
            "dueDate": None,
            "isWon": False,
            "isLost": False,
            "isSettled": False,
            "isInProgress": True,
            "wonTimeStamp": None,
            "lostTimeStamp": None,
        }
        ticket.update(_normalise_ticket_fields(fields))
        if not ticket["idWorkflow"]:
            ticket["idWorkflow"] = (
                self.workflow_of_stage(ticket["idStage"])
                if ticket["idStage"]
                else next(iter(self.workflows), None)
            )
        if not ticket["idStage"] and ticket["idWorkflow"]:
            stages = _get(self.workflows, ticket["idWorkflow"], "workflow")["stages"]
            ticket["idStage"] = stages[0]["id"] if stages else None
        self._check_ticket(ticket)

        self._next_ref += 1
        self.tickets[ticket_id] = ticket
        return ticket_id, [Webhook(DEAL_CREATED, ticket_id)]

    def update_ticket(self, ticket_id: str, fields: Mapping[str, Any]) -> list[Webhook]:
        """Replace the given fields of a deal; answer the webhooks it causes."""
        _check_fields(fields)
        before = self.ticket(ticket_id)
        after = {**copy.deepcopy(before), **_normalise_ticket_fields(fields)}
        self._check_ticket(after)

        kinds = {
            TICKET_EVENTS.get(name, DEAL_UPDATED)
            for name in fields
            if before.get(name) != after.get(name)
        }
        self.tickets[ticket_id] = after
        return [
            Webhook(kind, ticket_id) for kind in TICKET_EVENT_ORDER if kind in kinds
        ]

    def status_fields(self, status: str) -> dict[str, Any]:
        """The TicketInput fields S1 sends for a status (seen: S1).

        won: won and settled; lost: lost, not settled; in_progress: neither.
        """
        stamp = self.clock()
        if status == "won":
            return {
                "isWon": True,
                "isLost": False,
                "isSettled": True,
                "isInProgress": False,
                "wonTimeStamp": stamp,
            }
        if status == "lost":
            return {
                "isWon": False,
                "isLost": True,
                "isSettled": False,
                "isInProgress": False,
                "lostTimeStamp": stamp,
            }
        if status == "in_progress":
            return {
                "isWon": False,
                "isLost": False,
                "isSettled": False,
                "isInProgress": True,
            }
        raise SimulatorError(f"status must be won, lost or in_progress, not {status!r}")

    def add_attachment(self, ticket_id: str, file_name: str) -> list[Webhook]:
        self.ticket(ticket_id)
        self.attachments.setdefault(ticket_id, []).append(file_name)
        return [Webhook(DEAL_CHANGES_ATTACHMENTS, ticket_id)]

    def require_document(self, ticket_id: str, name: str) -> list[Webhook]:
        self.ticket(ticket_id)
        self.required_documents.setdefault(ticket_id, []).append(name)
        return [Webhook(DEAL_CHANGES_REQUIRED_DOCUMENTS, ticket_id)]

    def _check_ticket(self, ticket: Record) -> None:
        owner, workflow_id, stage = (
            ticket["idOwner"],
            ticket["idWorkflow"],
            ticket["idStage"],
        )
        if owner is not None and owner not in self.users:
            raise UnknownRecord(f"no user with id {owner}")
        if workflow_id is not None:
            workflow = _get(self.workflows, workflow_id, "workflow")
            if stage is not None and all(s["id"] != stage for s in workflow["stages"]):
                raise SimulatorError(
                    f"stage {stage} is not a stage of workflow {workflow['name']}"
                )

    # -- contacts ------------------------------------------------------------

    def create_contact(
        self,
        fields: Mapping[str, Any],
        *,
        owner_id: str,
        contact_id: str | None = None,
        labels: list[str] | None = None,
    ) -> tuple[str, list[Webhook]]:
        """Create a contact from ContactInput fields."""
        contact_id = contact_id or new_id()
        contact: Record = {
            "id": contact_id,
            "idOwner": owner_id,
            "description": None,
            "isActive": True,
            "idLabels": list(labels or []),
            "person": {
                "information": {
                    "firstName": None,
                    "familyName": None,
                    "preferredName": None,
                    "dateOfBirth": None,
                },
                "contact": {
                    "email": None,
                    "secondaryEmail": None,
                    "primaryCode": None,
                    "primary": None,
                    "homeCode": None,
                    "home": None,
                    "mailingAddress": None,
                },
                "employments": [],
            },
            "income": None,
        }
        _merge(contact, fields)
        if contact["idOwner"] not in self.users:
            raise UnknownRecord(f"no user with id {contact['idOwner']}")
        self.contacts[contact_id] = contact
        return contact_id, [Webhook(CONTACT_CREATED, contact_id)]

    def update_contact(
        self, contact_id: str, fields: Mapping[str, Any]
    ) -> list[Webhook]:
        """Merge ContactInput-shaped ``fields`` into the contact."""
        before = self.contact(contact_id)
        after = copy.deepcopy(before)
        _merge(after, fields)
        if after == before:
            return []
        self.contacts[contact_id] = after
        return [Webhook(CONTACT_UPDATED, contact_id)]

    # -- notes ---------------------------------------------------------------

    def create_note(
        self,
        fields: Mapping[str, Any],
        *,
        owner_id: str,
        note_id: str | None = None,
    ) -> tuple[str, list[Webhook]]:
        """Create a note from NoteInput fields; it must name a deal."""
        ticket_id = fields.get("idTicket")
        if not ticket_id:
            raise SimulatorError("a note needs idTicket")
        ticket = self.ticket(ticket_id)
        note_type = fields.get("type") or {}
        note_id = note_id or new_id()
        self.notes[note_id] = {
            "id": note_id,
            "idTicket": ticket_id,
            "idOwner": fields.get("idOwner") or owner_id,
            "idWorkflow": fields.get("idWorkflow") or ticket["idWorkflow"],
            "content": fields.get("content"),
            "isActive": fields.get("isActive", True) is not False,
            "type": {"name": note_type.get("name") or "comment"},
            "timeStamp": self.clock(),
        }
        return note_id, [Webhook(NOTE_CREATED, note_id, ticket_id)]

    def update_note(self, note_id: str, content: str) -> list[Webhook]:
        note = self.note(note_id)
        if note["content"] == content:
            return []
        note["content"] = content
        return [Webhook(NOTE_UPDATED, note_id, note["idTicket"])]


def _get(records: Mapping[str, Record], record_id: str, kind: str) -> Record:
    try:
        return records[record_id]
    except (KeyError, TypeError):
        raise UnknownRecord(f"no {kind} with id {record_id}") from None


def _check_fields(fields: Mapping[str, Any]) -> None:
    unknown = sorted(set(fields) - TICKET_FIELDS)
    if unknown:
        raise SimulatorError(f"TicketInput has no field {', '.join(unknown)}")


def _normalise_ticket_fields(fields: Mapping[str, Any]) -> Record:
    """TicketInput values as the Ticket type reads them back."""
    record = copy.deepcopy(dict(fields))
    for name in ("assets", "liabilities"):
        if record.get(name):
            record[name] = [{"id": new_id(), **item} for item in record[name]]
    if record.get("expenses"):
        record["expenses"] = [_household(item) for item in record["expenses"]]
    return record


def _household(item: Mapping[str, Any]) -> Record:
    expenses = item.get("householdExpenses")
    return {
        "idContacts": item.get("idContacts"),
        "householdExpenses": [expenses] if isinstance(expenses, Mapping) else [],
        "type": (expenses or {}).get("type") if isinstance(expenses, Mapping) else None,
    }


def _merge(target: Record, changes: Mapping[str, Any]) -> None:
    """Merge nested mappings into ``target``; other values replace."""
    for name, value in changes.items():
        if isinstance(value, Mapping) and isinstance(target.get(name), dict):
            _merge(target[name], value)
        else:
            target[name] = copy.deepcopy(value)


def _person(first: str, family: str, email: str, mobile: str) -> Record:
    return {
        "person": {
            "information": {"firstName": first, "familyName": family},
            "contact": {"email": email, "primaryCode": "+61", "primary": mobile},
        }
    }
