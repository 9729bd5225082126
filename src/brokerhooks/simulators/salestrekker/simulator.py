"""``SalesTrekkerSimulator``: one SalesTrekker organisation, in memory.

It serves ``POST /graphql`` like a tenant host, sends webhooks for every
change (made through a mutation, the Python control API below or the HTTP
control API under ``/_sim``), and injects faults on request.

How it answers (every SalesTrekker behaviour here not in a source is a
GUESS, see reference/salestrekker.md):

=====================================  =========================================
request                                answer
=====================================  =========================================
no, invalid, expired or revoked token  HTTP 401, ``{"errors": [{"message":
                                       "Invalid or expired token", "extensions":
                                       {"code": "UNAUTHENTICATED"}}]}`` (GUESS)
``authenticate`` with a wrong key      HTTP 200, error "Invalid API key" with
                                       code UNAUTHENTICATED, no token (GUESS)
query that fails validation            HTTP 400, graphql-core's messages, code
                                       GRAPHQL_VALIDATION_FAILED (GUESS)
``ticket``/``contact``/``note`` of an  HTTP 200, ``null`` (GUESS)
unknown id
refused mutation (unknown stage ...)   HTTP 200, error in the envelope (GUESS)
injected failure                       ``failure_status`` (503), plain text
=====================================  =========================================

Every request except ``authenticate`` needs ``Authorization: Bearer
<token>``; the token check comes before validation, like an auth
middleware (GUESS).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
from graphql import GraphQLSchema
from starlette.applications import Starlette

from brokerhooks.simulators.salestrekker import seed as demo
from brokerhooks.simulators.salestrekker.api import (
    Resolvers,
    TokenIssuer,
    served_schema,
)
from brokerhooks.simulators.salestrekker.server import DocumentCache, build_app
from brokerhooks.simulators.salestrekker.state import (
    Record,
    SimulatorError,
    SimulatorState,
    UnknownRecord,
)
from brokerhooks.simulators.salestrekker.webhooks import (
    SentWebhook,
    Webhook,
    WebhookSender,
)


@dataclass
class Faults:
    """Faults the simulator injects into ``/graphql``, changeable at any time.

    ``latency`` seconds are added to every request. ``fail_next`` requests,
    then a ``failure_rate`` fraction of the rest, are answered with
    ``failure_status`` (and ``Retry-After: retry_after`` if set). While
    ``expire_tokens`` is set, every token is answered as expired.
    """

    latency: float = 0.0
    failure_rate: float = 0.0
    fail_next: int = 0
    failure_status: int = 503
    retry_after: float | None = None
    expire_tokens: bool = False

    def check(self) -> None:
        if self.latency < 0:
            raise SimulatorError("latency must be 0 or more seconds")
        if not 0 <= self.failure_rate <= 1:
            raise SimulatorError("failure_rate must be between 0 and 1")
        if self.fail_next < 0:
            raise SimulatorError("fail_next must be 0 or more")
        if not 400 <= self.failure_status <= 599:
            raise SimulatorError("failure_status must be an HTTP error status")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class SalesTrekkerSimulator:
    """A SalesTrekker organisation for tests and demos.

    ``api_key`` is the key ``authenticate`` accepts and the key sent in the
    ``Authorization: Salestrekker`` header of each webhook. With
    ``webhook_url`` None, webhooks are recorded but not posted. ``seed``
    fills in the demo organisation of ``brokerhooks.simulators.salestrekker
    .seed`` (its ids are also attributes of this class).

    The control methods are coroutines: they change the state at once and
    queue the webhooks in the background of the running event loop;
    ``await flush()`` waits for them.
    """

    ORGANISATION_ID = demo.ORGANISATION_ID
    OWNER_ID = demo.OWNER_ID
    ASSISTANT_ID = demo.ASSISTANT_ID
    HOME_LOAN_WORKFLOW_ID = demo.HOME_LOAN_WORKFLOW_ID
    ASSET_FINANCE_WORKFLOW_ID = demo.ASSET_FINANCE_WORKFLOW_ID
    HOME_LOAN_STAGE_IDS = demo.HOME_LOAN_STAGE_IDS
    LABEL_IDS = demo.LABEL_IDS
    JANE_ID = demo.JANE_ID
    RAJ_ID = demo.RAJ_ID
    DEAL_ID = demo.DEAL_ID
    NOTE_ID = demo.NOTE_ID

    def __init__(
        self,
        api_key: str,
        webhook_url: str | None = None,
        *,
        seed: bool = True,
        token_lifetime: timedelta = timedelta(days=14),
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        random_seed: int | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("the simulator needs an API key")
        self.api_key = api_key
        self.state = SimulatorState()
        if seed:
            self.state.seed()
        self.faults = Faults()
        self.requests: Counter[str] = Counter()
        self.tokens = TokenIssuer(token_lifetime)
        self.random = random.Random(random_seed)
        self._removed: set[tuple[str, str]] = set()
        self._schema = served_schema(())
        self.documents = DocumentCache()
        self._webhooks = WebhookSender(
            webhook_url, api_key, transport=webhook_transport
        )
        self.resolvers = Resolvers(
            self.state, self.tokens, api_key, self._webhooks.schedule
        )
        self.app: Starlette = build_app(self)

    # -- plumbing ------------------------------------------------------------

    @property
    def webhook_url(self) -> str | None:
        return self._webhooks.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self._webhooks.url = url

    @property
    def sent_webhooks(self) -> list[SentWebhook]:
        """Every webhook so far, in order, with its delivery outcome."""
        return self._webhooks.sent

    def transport(self) -> httpx.ASGITransport:
        """A transport that sends httpx requests to this simulator in-process."""
        return httpx.ASGITransport(app=self.app)

    async def flush(self) -> None:
        """Wait until the webhooks queued from this event loop are delivered."""
        await self._webhooks.flush()

    # -- faults --------------------------------------------------------------

    @property
    def schema(self) -> GraphQLSchema:
        """The schema served now: the bundled one less any removed fields."""
        return self._schema

    @property
    def removed_fields(self) -> list[str]:
        return sorted(f"{type_name}.{field}" for type_name, field in self._removed)

    def remove_field(self, type_name: str, field_name: str) -> None:
        """Serve the schema without ``type_name.field_name``.

        ``remove_field("Query", "note")`` removes the ``note`` query.
        ValueError if the bundled schema has no such field.
        """
        removed = {*self._removed, (type_name, field_name)}
        self._schema = served_schema(removed)
        self._removed = removed

    def restore_schema(self) -> None:
        """Serve the bundled schema again."""
        self._removed = set()
        self._schema = served_schema(())

    def fail_requests(
        self, count: int, *, status: int = 503, retry_after: float | None = None
    ) -> None:
        """Answer the next ``count`` GraphQL requests with ``status``."""
        self.faults.fail_next = count
        self.faults.failure_status = status
        self.faults.retry_after = retry_after
        self.faults.check()

    def revoke_tokens(self) -> None:
        """Answer every token issued so far as expired; new ones work."""
        self.tokens.revoke_all()

    def injected_failure(self) -> bool:
        """Whether to fail the request now; counts down ``fail_next``."""
        if self.faults.fail_next > 0:
            self.faults.fail_next -= 1
            return True
        return self.random.random() < self.faults.failure_rate

    # -- lookups -------------------------------------------------------------

    def stage_id(self, stage_name: str, workflow_id: str | None = None) -> str:
        """The id of a stage by name, e.g. ``stage_id("6. Approved")``."""
        return self.state.stage_id(stage_name, workflow_id)

    def stage_name(self, stage_id: str) -> str:
        for workflow in self.state.workflows.values():
            for stage in workflow["stages"]:
                if stage["id"] == stage_id:
                    return str(stage["name"])
        raise UnknownRecord(f"no stage with id {stage_id}")

    def label_id(self, name: str) -> str:
        return self.state.label_id(name)

    def user_id(self, name_or_id: str) -> str:
        return self.state.user_id(name_or_id)

    def deal(self, deal_id: str) -> Record:
        """A copy of the deal as stored."""
        return dict(self.state.ticket(deal_id))

    def contact(self, contact_id: str) -> Record:
        return dict(self.state.contact(contact_id))

    def note(self, note_id: str) -> Record:
        return dict(self.state.note(note_id))

    # -- changes -------------------------------------------------------------

    async def create_deal(
        self,
        name: str,
        *,
        stage: str | None = None,
        workflow_id: str | None = None,
        owner: str | None = None,
        contact_id: str | None = None,
        value: float | None = None,
        due_date: date | datetime | None = None,
        labels: tuple[str, ...] = (),
    ) -> str:
        """Create a deal (dealCreated); answer its id.

        ``stage`` is a stage name (default: the workflow's first stage),
        ``owner`` a user's name or id (default: the key's user), ``labels``
        label names.
        """
        workflow_id = workflow_id or demo.HOME_LOAN_WORKFLOW_ID
        fields: dict[str, Any] = {"name": name, "idWorkflow": workflow_id}
        if stage is not None:
            fields["idStage"] = self.stage_id(stage, workflow_id)
        if contact_id is not None:
            self.state.contact(contact_id)
            fields["idClients"] = [contact_id]
            fields["ticketClientTypes"] = [{"idContact": contact_id, "idLabel": None}]
        if value is not None:
            fields["values"] = {"onceOff": float(value)}
        if due_date is not None:
            fields["dueDate"] = epoch_ms(due_date)
        if labels:
            fields["idLabels"] = [self.label_id(label) for label in labels]
        owner_id = self.user_id(owner) if owner else demo.OWNER_ID

        deal_id, webhooks = self.state.create_ticket(
            {**fields, "idOwner": owner_id}, owner_id=owner_id
        )
        self._send(webhooks)
        return deal_id

    async def update_deal(self, deal_id: str, **fields: Any) -> list[str]:
        """Replace TicketInput fields, as ``ticketUpdate`` does; answer the events."""
        return self._send(self.state.update_ticket(deal_id, fields))

    async def move_deal(self, deal_id: str, stage_name: str) -> list[str]:
        """Move the deal to the stage called ``stage_name`` (dealChangesStage).

        The stage is looked up in the deal's workflow first; a stage of
        another workflow moves the deal there too (dealChangesWorkflow).
        """
        workflow_id = self.state.ticket(deal_id)["idWorkflow"]
        try:
            stage_id = self.stage_id(stage_name, workflow_id)
        except UnknownRecord:
            stage_id = self.stage_id(stage_name)
        fields = {
            "idWorkflow": self.state.workflow_of_stage(stage_id),
            "idStage": stage_id,
        }
        return await self.update_deal(deal_id, **fields)

    async def set_due_date(
        self, deal_id: str, due_date: date | datetime | None
    ) -> list[str]:
        """Set or clear the deal's due date (dealChangesDueDate)."""
        value = epoch_ms(due_date) if due_date is not None else None
        return await self.update_deal(deal_id, dueDate=value)

    async def set_owner(self, deal_id: str, owner: str) -> list[str]:
        """Give the deal to a user, by name or id (dealChangesOwner)."""
        return await self.update_deal(deal_id, idOwner=self.user_id(owner))

    async def set_status(self, deal_id: str, status: str) -> list[str]:
        """Mark the deal won, lost or in_progress (dealChangesStatus)."""
        return await self.update_deal(deal_id, **self.state.status_fields(status))

    async def add_attachment(self, deal_id: str, file_name: str) -> list[str]:
        """Attach a file to the deal (dealChangesAttachments)."""
        return self._send(self.state.add_attachment(deal_id, file_name))

    async def require_document(self, deal_id: str, name: str) -> list[str]:
        """Ask for a document on the deal (dealChangesRequiredDocuments)."""
        return self._send(self.state.require_document(deal_id, name))

    async def add_note(
        self, deal_id: str, content: str, *, owner: str | None = None
    ) -> str:
        """Write a note on the deal (noteCreated); answer its id."""
        owner_id = self.user_id(owner) if owner else demo.OWNER_ID
        note_id, webhooks = self.state.create_note(
            {"idTicket": deal_id, "content": content}, owner_id=owner_id
        )
        self._send(webhooks)
        return note_id

    async def update_note(self, note_id: str, content: str) -> list[str]:
        """Change a note's text (noteUpdated)."""
        return self._send(self.state.update_note(note_id, content))

    async def create_contact(
        self,
        first_name: str,
        family_name: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        owner: str | None = None,
    ) -> str:
        """Create a person contact with the Client label (contactCreated)."""
        owner_id = self.user_id(owner) if owner else demo.OWNER_ID
        contact_id, webhooks = self.state.create_contact(
            _person_fields(first_name, family_name, email, phone),
            owner_id=owner_id,
            labels=[self.label_id("Client")],
        )
        self._send(webhooks)
        return contact_id

    async def update_contact(
        self,
        contact_id: str,
        *,
        first_name: str | None = None,
        family_name: str | None = None,
        email: str | None = None,
        phone: str | None = None,
    ) -> list[str]:
        """Change the given details of a contact (contactUpdated)."""
        fields = _person_fields(first_name, family_name, email, phone)
        return self._send(self.state.update_contact(contact_id, fields))

    def _send(self, webhooks: list[Webhook]) -> list[str]:
        self._webhooks.schedule(webhooks)
        return [webhook.event for webhook in webhooks]


def epoch_ms(value: date | datetime) -> int:
    """A due date as SalesTrekker would store it: epoch ms (GUESS).

    A date is taken as midnight UTC; a naive datetime as UTC.
    """
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def _person_fields(
    first_name: str | None,
    family_name: str | None,
    email: str | None,
    phone: str | None,
) -> dict[str, Any]:
    information = {"firstName": first_name, "familyName": family_name}
    contact = {"email": email, "primary": phone}
    return {
        "person": {
            "information": {k: v for k, v in information.items() if v is not None},
            "contact": {k: v for k, v in contact.items() if v is not None},
        }
    }
