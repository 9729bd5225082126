"""Enrichment: fetch what an event is about from SalesTrekker.

A deal event fetches the deal and its primary client; a note event fetches
the note and its deal; a contact event fetches the contact. The event's own
subject is the snapshot compared with the previous one; the others are kept
as snapshots too, so that later events see the latest known state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from brokerhooks.ingest.salestrekker_events import subject_of
from brokerhooks.store.processing import EventToProcess


class SalesTrekkerReader(Protocol):
    async def fetch_deal(self, deal_id: str) -> dict[str, Any]: ...

    async def fetch_contact(self, contact_id: str) -> dict[str, Any]: ...

    async def fetch_note(self, note_id: str) -> dict[str, Any]: ...


# Gives the SalesTrekker reader of a broker, by broker id.
ReaderFactory = Callable[[str], SalesTrekkerReader]


@dataclass(slots=True)
class Fetched:
    """The snapshots fetched for one event, its subject's first."""

    subject: str
    entity_id: str
    data: dict[str, Any]
    related: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def all(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(subject, entity id, data) of every snapshot."""
        return [
            (self.subject, self.entity_id, self.data),
            *(
                (subject, entity, data)
                for subject, (entity, data) in self.related.items()
            ),
        ]


def from_snapshots(
    event: EventToProcess, snapshots: dict[str, dict[str, Any]]
) -> Fetched:
    """The ``Fetched`` of an event processed before, from its stored snapshots."""
    subject = subject_of(event.type) or "deal"
    fetched = Fetched(subject, event.entity_id, snapshots.get(subject, {}))
    for other, data in snapshots.items():
        if other != subject:
            fetched.related[other] = (str(data.get("id", "")), data)
    return fetched


async def fetch(reader: SalesTrekkerReader, event: EventToProcess) -> Fetched:
    """Fetch the snapshots of ``event``; connector errors pass through."""
    subject = subject_of(event.type)
    if subject == "deal":
        deal = await reader.fetch_deal(event.entity_id)
        fetched = Fetched("deal", event.entity_id, deal)
        clients = deal.get("idClients") or []
        if clients:
            fetched.related["contact"] = (
                clients[0],
                await reader.fetch_contact(clients[0]),
            )
        return fetched
    if subject == "note":
        note = await reader.fetch_note(event.entity_id)
        fetched = Fetched("note", event.entity_id, note)
        deal_id = event.deal_id or note.get("idTicket")
        if deal_id:
            fetched.related["deal"] = (deal_id, await reader.fetch_deal(deal_id))
        return fetched
    if subject == "contact":
        return Fetched(
            "contact", event.entity_id, await reader.fetch_contact(event.entity_id)
        )
    raise ValueError(f"event type {event.type!r} has nothing to fetch")
