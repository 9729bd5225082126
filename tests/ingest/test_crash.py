"""Acknowledged means stored: SIGKILL the server mid-load, nothing is lost."""

from __future__ import annotations

import random
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import Engine, select

from brokerhooks.config import Settings
from brokerhooks.security.secrets import Vault
from brokerhooks.store.database import transaction
from brokerhooks.store.models import Event
from tests.helpers import add_broker
from tests.servers import ServiceProcess

KEY = "crash-test-key-5f1d0c8e9b7a6f5e4d3c2b1a"


def _load(url: str, acknowledged: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=5) as client:
        while not stop.is_set():
            try:
                response = client.post(
                    "/hooks/salestrekker",
                    json={"event": "dealChangesStage", "id": str(uuid.uuid4())},
                    headers={"Authorization": f"Salestrekker {KEY}"},
                )
            except httpx.TransportError:
                return  # the server is gone
            if response.status_code == 200:
                acknowledged.append(response.json()["event"])


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_every_acknowledged_delivery_survives_sigkill(
    settings: Settings, settings_env: dict[str, str], engine: Engine, round_: int
) -> None:
    add_broker(engine, Vault(settings.fernet_keys), api_key=KEY)
    service = ServiceProcess(settings_env, "--no-worker").start()
    acknowledged: list[str] = []
    stop = threading.Event()
    senders = [
        threading.Thread(target=_load, args=(service.url, acknowledged, stop))
        for _ in range(16)
    ]
    for sender in senders:
        sender.start()

    deadline = time.monotonic() + 60
    while len(acknowledged) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0, 1.0))
    service.kill()
    stop.set()
    for sender in senders:
        sender.join()

    restarted = ServiceProcess(settings_env, "--no-worker").start()
    try:
        with transaction(engine) as connection:
            stored = set(connection.scalars(select(Event.id)))
    finally:
        restarted.stop()
    assert len(acknowledged) >= 20, "the load did not get going before the kill"
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged events were lost"
