"""A worker killed with SIGKILL mid-action: the action's effect happens once.

The Microsoft 365 simulator makes the To Do task, then holds its answer;
the worker is killed while it waits. Another worker takes the job over
after the lease expires, finds the task by its idempotency key, and
records it: one task in To Do, one ledger entry done.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import Engine, select

from brokerhooks.config import Settings
from brokerhooks.security.secrets import Vault
from brokerhooks.simulators.msgraph import LoopbackCertificates, MicrosoftGraphSimulator
from brokerhooks.simulators.salestrekker import SalesTrekkerSimulator
from brokerhooks.store import runs
from brokerhooks.store.connections import mark_m365_connected
from brokerhooks.store.database import transaction
from brokerhooks.store.models import ActionRecord
from tests.connectors.msgraph.conftest import (
    ANN,
    CLIENT_ID,
    add_connection,
    certificates,
    serve_https,
    sim,
)
from tests.helpers import add_broker, queue_event, save_rules
from tests.servers import serve_in_thread

__all__ = ["certificates", "sim"]

API_KEY = "action-kill-key-0a1b2c3d4e5f60718293"
RULE = """\
rules:
  - id: task-on-update
    trigger: dealUpdated
    actions:
      - id: task
        kind: todo_task
        connection: office
        params:
          list: Deals
          title: "Follow up {{ deal.name }}"
"""


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@pytest.fixture
def graph_url(
    sim: MicrosoftGraphSimulator, certificates: LoopbackCertificates
) -> Iterator[str]:
    with serve_https(sim.app, certificates) as url:
        yield url


def test_a_killed_action_is_finished_once(
    settings: Settings,
    settings_env: dict[str, str],
    engine: Engine,
    sim: MicrosoftGraphSimulator,
    certificates: LoopbackCertificates,
    graph_url: str,
) -> None:
    salestrekker = SalesTrekkerSimulator(API_KEY)
    vault = Vault(settings.fernet_keys)
    with serve_in_thread(salestrekker.app) as salestrekker_url:
        broker = add_broker(
            engine, vault, api_key=API_KEY, salestrekker_url=salestrekker_url
        )
        office = add_connection(
            engine,
            vault,
            broker,
            graph_url,
            kind="app_only",
            name="office",
            mailbox=ANN,
        )
        with transaction(engine, write=True) as connection:
            mark_m365_connected(connection, office.id)
        save_rules(engine, broker.id, RULE, connections=["office"])
        queue_event(engine, broker.id, "dealUpdated", salestrekker.DEAL_ID)
        env = {
            **settings_env,
            "BROKERHOOKS_LEASE_SECONDS": "2",
            "BROKERHOOKS_POLL_SECONDS": "0.1",
            "REQUESTS_CA_BUNDLE": str(certificates.ca_path),
            "SSL_CERT_FILE": str(certificates.ca_path),
        }

        def tasks() -> list[dict[str, object]]:
            lists = [
                found
                for found in sim.task_lists(ANN)
                if found.get("displayName") == "Deals"
            ]
            return sim.tasks(ANN, str(lists[0]["id"])) if lists else []

        def ledger() -> list[str]:
            with transaction(engine) as connection:
                return list(connection.scalars(select(ActionRecord.status)))

        asyncio.run(_make_list(sim, "Deals"))
        sim.answer_delay = 10.0
        doomed = start_worker(env)
        try:
            wait_for(lambda: len(tasks()) == 1)
            assert ledger() == [runs.RUNNING]
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
        sim.answer_delay = 0.0

        survivor = start_worker(env)
        try:
            wait_for(lambda: ledger() == [runs.DONE])
        finally:
            survivor.send_signal(signal.SIGTERM)
            assert survivor.wait(timeout=30) == 0

    [task] = tasks()
    with transaction(engine) as connection:
        entry = connection.execute(select(ActionRecord.__table__)).one()
    assert entry.remote_id == task["id"]
    assert '"done": "found"' in (entry.output or "")


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "brokerhooks", "worker"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _make_list(sim: MicrosoftGraphSimulator, name: str) -> None:
    token = sim.issue_access_token(client_id=CLIENT_ID)
    async with httpx.AsyncClient(
        transport=sim.transport(), base_url="https://graph.test"
    ) as client:
        response = await client.post(
            f"/v1.0/users/{ANN}/todo/lists",
            json={"displayName": name},
            headers={"Authorization": f"Bearer {token}"},
        )
    response.raise_for_status()
