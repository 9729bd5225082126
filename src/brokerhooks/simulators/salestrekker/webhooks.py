"""Webhooks as SalesTrekker sends them, and the simulator's sender.

Each webhook is one POST with ``Content-Type: application/json``, the
header ``Authorization: Salestrekker <api key>`` (as DESIGN.md describes;
no public code shows it, so: GUESS) and the body ``{"event", "id"}``, plus
``idDeal`` on note events (seen for noteCreated; GUESS for noteUpdated).

The sender delivers in the order the changes happened, one at a time, in
the background of the event loop that made the change. It never raises: a
failure is logged and recorded in ``sent``. SalesTrekker's retries are
unknown, so the simulator does not retry.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import structlog

log = structlog.get_logger("brokerhooks.simulators.salestrekker")

CONTACT_CREATED = "contactCreated"
CONTACT_UPDATED = "contactUpdated"
DEAL_CREATED = "dealCreated"
DEAL_UPDATED = "dealUpdated"
DEAL_CHANGES_DUE_DATE = "dealChangesDueDate"
DEAL_CHANGES_STAGE = "dealChangesStage"
DEAL_CHANGES_WORKFLOW = "dealChangesWorkflow"
DEAL_CHANGES_STATUS = "dealChangesStatus"
DEAL_CHANGES_ATTACHMENTS = "dealChangesAttachments"
DEAL_CHANGES_REQUIRED_DOCUMENTS = "dealChangesRequiredDocuments"
DEAL_CHANGES_OWNER = "dealChangesOwner"
NOTE_CREATED = "noteCreated"
NOTE_UPDATED = "noteUpdated"

EVENTS = (
    CONTACT_CREATED,
    CONTACT_UPDATED,
    DEAL_CREATED,
    DEAL_UPDATED,
    DEAL_CHANGES_DUE_DATE,
    DEAL_CHANGES_STAGE,
    DEAL_CHANGES_WORKFLOW,
    DEAL_CHANGES_STATUS,
    DEAL_CHANGES_ATTACHMENTS,
    DEAL_CHANGES_REQUIRED_DOCUMENTS,
    DEAL_CHANGES_OWNER,
    NOTE_CREATED,
    NOTE_UPDATED,
)


@dataclass(frozen=True, slots=True)
class Webhook:
    """One notification: what happened (``event``) to which ``id``."""

    event: str
    id: str
    deal_id: str | None = None

    def body(self) -> dict[str, str]:
        body = {"event": self.event, "id": self.id}
        if self.deal_id is not None:
            body["idDeal"] = self.deal_id
        return body


@dataclass(frozen=True, slots=True)
class SentWebhook:
    """A webhook after its delivery: the answer's status, or the error."""

    event: str
    id: str
    deal_id: str | None
    status: int | None
    error: str | None
    sent_at: datetime

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """Posts webhooks to ``url`` in order, in the background.

    With no ``url`` nothing is posted, but each webhook is still recorded
    (status None) so that tests can see what would have been sent.
    """

    def __init__(
        self,
        url: str | None,
        api_key: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._api_key = api_key
        self._transport = transport
        self._timeout = timeout
        self.sent: list[SentWebhook] = []
        self._pending: set[asyncio.Task[None]] = set()
        self._tail: asyncio.Task[None] | None = None

    def schedule(self, webhooks: Sequence[Webhook]) -> None:
        """Queue ``webhooks`` behind those already queued.

        Must be called from a running event loop; the webhooks go out in
        its background.
        """
        if not webhooks:
            return
        loop = asyncio.get_running_loop()
        previous = self._tail
        if previous is not None and (previous.done() or previous.get_loop() != loop):
            previous = None
        task = loop.create_task(self._deliver(previous, list(webhooks)))
        self._tail = task
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait until every webhook queued from this event loop is delivered."""
        loop = asyncio.get_running_loop()
        while waiting := [t for t in self._pending if t.get_loop() == loop]:
            await asyncio.gather(*waiting, return_exceptions=True)

    async def _deliver(
        self, previous: asyncio.Task[None] | None, webhooks: list[Webhook]
    ) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        if self.url is None:
            for webhook in webhooks:
                self._record(webhook, None, "no webhook URL configured")
            return

        transport = self._transport or httpx.AsyncHTTPTransport()
        client = httpx.AsyncClient(transport=transport, timeout=self._timeout)
        try:
            for webhook in webhooks:
                await self._post(client, webhook)
        finally:
            if self._transport is None:
                await client.aclose()

    async def _post(self, client: httpx.AsyncClient, webhook: Webhook) -> None:
        assert self.url is not None
        try:
            response = await client.post(
                self.url,
                content=json.dumps(webhook.body()).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Salestrekker {self._api_key}",
                },
            )
        except httpx.HTTPError as error:
            self._record(webhook, None, type(error).__name__)
            log.warning(
                "simulator_webhook_failed",
                webhook_event=webhook.event,
                entity_id=webhook.id,
                error=type(error).__name__,
            )
            return

        self._record(webhook, response.status_code, None)
        if not response.is_success:
            log.warning(
                "simulator_webhook_refused",
                webhook_event=webhook.event,
                entity_id=webhook.id,
                status=response.status_code,
            )

    def _record(self, webhook: Webhook, status: int | None, error: str | None) -> None:
        self.sent.append(
            SentWebhook(
                event=webhook.event,
                id=webhook.id,
                deal_id=webhook.deal_id,
                status=status,
                error=error,
                sent_at=datetime.now(UTC),
            )
        )
