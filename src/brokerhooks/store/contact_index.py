"""Which contact has an e-mail address, and which deals a contact is on.

Kept from the snapshots the pipeline stores: a contact snapshot replaces the
contact's addresses, a deal snapshot replaces the deal's clients. A mail
from an address is matched to its contact and to that contact's open deal
(the most recently seen one), or, when none is open, to the contact's most
recently seen deal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select

from brokerhooks.store.database import dialect_insert
from brokerhooks.store.models import ContactEmail, DealClient
from brokerhooks.store.types import utcnow

MAX_EMAIL_LENGTH = 320


@dataclass(frozen=True, slots=True)
class ContactMatch:
    contact_id: str
    deal_id: str | None


def normalise_email(value: object) -> str | None:
    """An address as the index keeps it (lower case), or None if it is none."""
    if not isinstance(value, str):
        return None
    address = value.strip().lower()
    if "@" not in address or len(address) > MAX_EMAIL_LENGTH:
        return None
    return address


def contact_emails(contact: Mapping[str, Any]) -> set[str]:
    """The addresses of a contact snapshot."""
    details = (contact.get("person") or {}).get("contact") or {}
    found = (normalise_email(details.get(name)) for name in ("email", "secondaryEmail"))
    return {address for address in found if address}


def is_open_deal(deal: Mapping[str, Any]) -> bool:
    """Active, and neither lost nor settled."""
    return bool(
        deal.get("isActive", True)
        and not deal.get("isLost")
        and not deal.get("isSettled")
    )


def index_snapshots(
    connection: Connection,
    broker_id: str,
    snapshots: Iterable[tuple[str, str, Mapping[str, Any]]],
) -> None:
    """Bring the index up to date with (subject, entity id, data) snapshots."""
    for subject, entity_id, data in snapshots:
        if subject == "contact":
            _index_contact(connection, broker_id, entity_id, data)
        elif subject == "deal":
            _index_deal(connection, broker_id, entity_id, data)


def _index_contact(
    connection: Connection, broker_id: str, contact_id: str, data: Mapping[str, Any]
) -> None:
    connection.execute(
        delete(ContactEmail).where(
            ContactEmail.broker_id == broker_id, ContactEmail.contact_id == contact_id
        )
    )
    now = utcnow()
    rows = [
        {
            "broker_id": broker_id,
            "email": email,
            "contact_id": contact_id,
            "updated_at": now,
        }
        for email in sorted(contact_emails(data))
    ]
    _upsert(connection, ContactEmail, rows, ("broker_id", "email", "contact_id"))


def _index_deal(
    connection: Connection, broker_id: str, deal_id: str, data: Mapping[str, Any]
) -> None:
    connection.execute(
        delete(DealClient).where(
            DealClient.broker_id == broker_id, DealClient.deal_id == deal_id
        )
    )
    now = utcnow()
    is_open = is_open_deal(data)
    clients = dict.fromkeys(str(client) for client in data.get("idClients") or [])
    rows = [
        {
            "broker_id": broker_id,
            "deal_id": deal_id,
            "contact_id": contact_id,
            "is_open": is_open,
            "updated_at": now,
        }
        for contact_id in clients
    ]
    _upsert(connection, DealClient, rows, ("broker_id", "deal_id", "contact_id"))


def _upsert(
    connection: Connection,
    model: type[ContactEmail] | type[DealClient],
    rows: list[dict[str, Any]],
    keys: tuple[str, ...],
) -> None:
    """Insert ``rows``, or update those another transaction has just written.

    Two jobs may index the same contact at once (two deals with one client):
    each deletes the old rows, and on PostgreSQL both may then insert the
    same key. The later one updates the row instead of failing.
    """
    if not rows:
        return
    statement = dialect_insert(connection, model)
    changed = {name: statement.excluded[name] for name in rows[0] if name not in keys}
    connection.execute(
        statement.on_conflict_do_update(index_elements=list(keys), set_=changed),
        rows,
    )


def match_email(
    connection: Connection, broker_id: str, address: object
) -> ContactMatch | None:
    """The contact with ``address`` and their deal, or None if nobody has it.

    When several contacts share an address (a couple), the one with an open
    deal wins, then the one seen last.
    """
    email = normalise_email(address)
    if email is None:
        return None
    contacts = list(
        connection.scalars(
            select(ContactEmail.contact_id)
            .where(ContactEmail.broker_id == broker_id, ContactEmail.email == email)
            .order_by(ContactEmail.updated_at.desc(), ContactEmail.contact_id)
        )
    )
    if not contacts:
        return None
    row = connection.execute(
        select(DealClient.contact_id, DealClient.deal_id)
        .where(DealClient.broker_id == broker_id, DealClient.contact_id.in_(contacts))
        .order_by(
            DealClient.is_open.desc(),
            DealClient.updated_at.desc(),
            DealClient.deal_id,
        )
        .limit(1)
    ).one_or_none()
    if row is None:
        return ContactMatch(contacts[0], None)
    return ContactMatch(row.contact_id, row.deal_id)
