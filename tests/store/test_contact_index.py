"""The contact index under jobs that index the same contact at once."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine, select

from brokerhooks.config import Settings
from brokerhooks.security.secrets import Vault
from brokerhooks.store.contact_index import index_snapshots, match_email
from brokerhooks.store.database import transaction
from brokerhooks.store.models import ContactEmail, DealClient
from tests.helpers import add_broker


def contact(email: str) -> dict[str, Any]:
    return {"person": {"contact": {"email": email}}}


def test_two_jobs_index_one_contact_and_deal_at_once(
    settings: Settings, engine: Engine
) -> None:
    broker = add_broker(engine, Vault(settings.fernet_keys), "acme", api_key="k1")
    contact_id, deal_id = str(uuid.uuid4()), str(uuid.uuid4())
    snapshots = [
        ("contact", contact_id, contact("Jane@Example.com")),
        ("deal", deal_id, {"idClients": [contact_id], "isActive": True}),
    ]
    first_written = threading.Event()

    def first() -> None:
        with transaction(engine, write=True) as connection:
            index_snapshots(connection, broker.id, snapshots)
            first_written.set()
            # The second job now runs its statements; on PostgreSQL its
            # insert waits for this transaction's rows to commit.
            threading.Event().wait(0.3)

    def second() -> None:
        first_written.wait(5)
        with transaction(engine, write=True) as connection:
            index_snapshots(connection, broker.id, snapshots)

    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(first), pool.submit(second)]
        for job in jobs:
            job.result(timeout=30)  # neither fails on a duplicate key

    with transaction(engine) as connection:
        emails = connection.execute(select(ContactEmail.email)).scalars().all()
        clients = connection.execute(select(DealClient.contact_id)).scalars().all()
        found = match_email(connection, broker.id, "jane@example.com")
    assert emails == ["jane@example.com"]
    assert clients == [contact_id]
    assert found is not None
    assert (found.contact_id, found.deal_id) == (contact_id, deal_id)
